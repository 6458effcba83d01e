#!/usr/bin/env python3
"""Train the Conv-VAE or the GCN-VAE on background (QCD) jets and save the inference model.

Why: hltrun ships its own anomaly-detection models (data/models/); this is the one command that
makes them.  Trains on the two leading jets of every event of ``--train-file``; saves
``<out-dir>/<name>.keras`` (jets -> {score, kl}) and ``<out-dir>/<name>_history.json`` (loss
curves and the training metadata the model card quotes).

Example::

    taskset -c 1 python tools/physics/train_vae.py --model conv --epochs 40 --train-file data/large/qcd_train.root
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hltrun.tools.catalogue import checkout, require_files, usage_error  # noqa: E402

REPO = checkout()
PROG = "train_vae.py"  # as argparse names it

from hltrun.framework.atomic import write_text, writing  # noqa: E402
from hltrun.tools.bench.runner import positive_int  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="Train a jet VAE (Keras 3 / TensorFlow) on background jets.")
    p.add_argument("--model", choices=("conv", "gcn"), required=True, help="architecture to train")
    p.add_argument("--epochs", type=positive_int, default=40, help="maximum number of epochs (early stopping may end sooner)")
    p.add_argument("--train-file", nargs="+", type=Path, default=[REPO / "data/large/qcd_train.root"],
                   help="background ROOT file(s) in the data/README.md layout")
    p.add_argument("--out-dir", type=Path, default=REPO / "data/models", help="where the model and history go")
    p.add_argument("--max-events", type=int, default=None, help="read at most this many events per file")
    p.add_argument("--max-jets", type=int, default=None, help="use at most this many jets (after shuffling)")
    p.add_argument("--batch-size", type=int, default=256, help="mini-batch size")
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of jets held out for validation")
    p.add_argument("--latent-dim", type=int, default=None, help="latent size (default: the architecture's, 8)")
    p.add_argument("--beta", type=float, default=None, help="KL weight (default: the architecture's, conv 1, gcn 1e-3)")
    p.add_argument("--lr", type=float, default=None, help="initial Adam learning rate (default 1e-3)")
    p.add_argument("--pt-mode", choices=("linear", "log", "fraction", "log_fraction"), default=None,
                   help="how the model sees constituent pT: GeV, log GeV, fraction of the jet's pT or its log "
                        "(default: the architecture's; modules/models/losses.py::PT_MODES)")
    p.add_argument("--free-bits", type=float, default=None,
                   help="KL floor per latent dimension in nats (free bits; 0 = off; default: the architecture's)")
    p.add_argument("--weighting", choices=("uniform", "pt_fraction"), default=None,
                   help="Chamfer sums: every constituent alike, or weighted by its share of the jet pT "
                        "(default: the architecture's; modules/models/losses.py::point_weights)")
    p.add_argument("--kl-warmup", type=int, default=None,
                   help="epochs over which the KL weight ramps up to beta (default: the architecture's)")
    p.add_argument("--patience", type=int, default=6, help="early-stopping patience in epochs (on val_loss)")
    p.add_argument("--seed", type=int, default=7, help="seed for shuffling, initialisation and sampling")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (inter-op is 1)")
    p.add_argument("--verbose", type=int, default=2, help="Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One clear line for values that would otherwise train something else than asked."""
    for name in ("free_bits", "beta", "lr"):
        value = getattr(args, name)
        if value is not None and (value < 0 or (name != "free_bits" and value == 0)):
            usage_error(PROG, f"--{name.replace('_', '-')} must be {'>= 0' if name == 'free_bits' else '> 0'}, "
                              f"got {value}")
    for path in args.train_file:  # named in one line before TensorFlow starts, not uproot's traceback after
        require_files(PROG, train_file=path)


def train(args: argparse.Namespace) -> dict:
    """Run the training described by ``args``; returns the history/metadata dictionary."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from hltrun.modules.models import vae
    from hltrun.modules.models.preprocess import load_jets

    keras.utils.set_random_seed(args.seed)
    jets, _ = load_jets([str(p) for p in args.train_file], max_events=args.max_events)
    rng = np.random.default_rng(args.seed)
    jets = jets[rng.permutation(len(jets))]
    if args.max_jets:
        jets = jets[: args.max_jets]
    n_val = max(1, int(round(args.val_fraction * len(jets))))
    train_x, val_x = jets[n_val:], jets[:n_val]
    spec = vae.default_spec(args.model)
    for field, value in (("latent_dim", args.latent_dim), ("beta", args.beta), ("learning_rate", args.lr),
                         ("pt_mode", args.pt_mode), ("free_bits", args.free_bits),
                         ("kl_warmup_epochs", args.kl_warmup), ("weighting", args.weighting)):
        if value is not None:
            setattr(spec, field, value)
    mean, std = vae.feature_stats(train_x, spec.pt_mode)
    encoder, decoder, spec = vae.build_parts(args.model, mean, std, spec)
    trainer = vae.VAETrainer(encoder, decoder, std, spec.beta, spec.free_bits, spec.weighting, name=f"{spec.name}_trainer")
    trainer.compile(optimizer=keras.optimizers.Adam(spec.learning_rate))
    train_ds = (tf.data.Dataset.from_tensor_slices(train_x)
                .shuffle(min(len(train_x), 20000), seed=args.seed).batch(args.batch_size))
    val_ds = tf.data.Dataset.from_tensor_slices(val_x).batch(1024)
    callbacks = [
        vae.KLWarmup(spec.kl_warmup_epochs),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=3, min_lr=1e-6, verbose=1),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True,
                                      start_from_epoch=spec.kl_warmup_epochs, verbose=1),
    ]
    print(f"training {spec.name}: {len(train_x)} jets, {len(val_x)} validation jets, beta={spec.beta}, "
          f"lr={spec.learning_rate}, latent={spec.latent_dim}, pt_mode={spec.pt_mode}, free_bits={spec.free_bits}, weighting={spec.weighting}", flush=True)
    t0 = time.perf_counter()
    hist = trainer.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=callbacks, shuffle=False,
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0

    model = vae.build_inference_model(encoder, decoder, std, spec.beta, spec.name, spec.weighting)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{spec.name}.keras"
    with writing(out, "train_vae", suffix=".keras") as staged:  # Keras saves only to *.keras
        model.save(str(staged.tmp))
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best = int(np.argmin(history["val_loss"]))
    meta = {
        "model": spec.name, "architecture": args.model, "latent_dim": spec.latent_dim, "beta": spec.beta,
        "learning_rate": spec.learning_rate, "kl_warmup_epochs": spec.kl_warmup_epochs, "pt_mode": spec.pt_mode,
        "free_bits": spec.free_bits, "weighting": spec.weighting,
        "batch_size": args.batch_size, "seed": args.seed,
        "train_files": [os.path.relpath(p, REPO) if Path(p).is_absolute() else str(p) for p in args.train_file],
        "n_train_jets": int(len(train_x)), "n_val_jets": int(len(val_x)),
        "epochs_run": len(history["loss"]), "max_epochs": args.epochs, "best_epoch": best + 1,
        "best_val_loss": history["val_loss"][best], "train_seconds": seconds,
        "feature_mean": mean, "feature_std": std, "n_params": int(model.count_params()),
        "command": "python tools/physics/train_vae.py " + " ".join(sys.argv[1:]),
        "history": history,
    }
    write_text(args.out_dir / f"{spec.name}_history.json", json.dumps(meta, indent=1), "train_vae")
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB); {meta['epochs_run']} epochs in {seconds:.0f} s, "
          f"best val_loss {meta['best_val_loss']:.4f} at epoch {best + 1}")
    return meta


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    args = parse_args(argv)
    check_args(args)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
