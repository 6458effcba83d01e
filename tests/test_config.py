"""Configuration errors: each one a single ConfigError line naming the file and the key path."""

from __future__ import annotations

import pytest
from pathlib import Path

from hltrun.framework.config import apply_overrides, load
from hltrun.framework.errors import ConfigError

BASE = """
process: TEST
source: {type: TestCountingSource, n: 5}
modules:
  even: {type: TestModuloFilter, divisor: 2}
  sq: {type: TestSquare, src: source}
paths:
  p: [even, sq]
"""


def error_of(write_config, text: str, *overrides: str) -> str:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load(path, list(overrides))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)) or message.startswith("command line")
    return message


def test_valid_config_builds_typed_objects(write_config):
    cfg = load(write_config(BASE))
    assert cfg.process == "TEST"
    assert cfg.modules["even"].params.divisor == 2
    assert [str(e) for e in cfg.paths["p"]] == ["even", "sq"]
    assert cfg.options.streams_in_flight == 1 and cfg.options.maxEvents == -1


@pytest.mark.parametrize("text, expected", [
    (BASE + "bogus: 1\n", "bogus: unknown top-level key"),
    (BASE + "options: {streamz: 2}\n", "options.streamz: unknown key"),
    (BASE + "options: {numberOfThreads: two}\n", "options.numberOfThreads: expected int, got 'two'"),
    (BASE + "options: {numberOfThreads: 0}\n", "numberOfThreads must be >= 1"),
    (BASE.replace("divisor: 2", "divisor: 2.5"), "modules.even.divisor: expected int"),
    (BASE.replace("divisor: 2", "divisr: 2"), "modules.even.divisr: unknown key; did you mean 'divisor'?"),
    (BASE + "options: {numberOfThread: 2}\n", "options.numberOfThread: unknown key; did you mean 'numberOfThreads'?"),
    (BASE.replace("TestSquare", "TestSqare"), "modules.sq.type: unknown module type 'TestSqare'; did you mean TestSquare"),
    (BASE.replace("p: [even, sq]", "p: [even, sqq]"), "paths.p[1]: 'sqq' is not a module label; did you mean 'sq'"),
    (BASE.replace("p: [even, sq]", "p: [even, ~sq]"), "only filters can be inverted"),
    (BASE.replace("src: source", "src: nowhere"), "modules.sq.src: consumes 'nowhere', but 'nowhere' is not a module label"),
    (BASE.replace("  sq: {type: TestSquare, src: source}", "  sq: {type: TestSquare, src: source}\n  sq: {type: TestSquare}"),
     "duplicate key 'sq' at line 7"),
    (BASE.replace("process: TEST", "process: [oops"), "invalid YAML"),
    ("source: {n: 3}\n", "source.type: required key is missing"),
    (BASE.replace("source: {type: TestCountingSource, n: 5}", ""), "source: required key is missing"),
])
def test_config_errors_name_the_key(write_config, text, expected):
    assert expected in error_of(write_config, text)


def test_two_letters_swapped_suggest_the_key_meant():
    """``modules.vae.modle=net.onnx`` (a newcomer's slip) suggested 'mode', which difflib ranks nearer than 'model'."""
    shipped = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    with pytest.raises(ConfigError, match=r"modules\.vae\.modle: unknown key; did you mean 'model'\?"):
        load(shipped, ["modules.vae.modle=net.onnx"])
    with pytest.raises(ConfigError, match=r"modules\.vae\.mdoe: unknown key; did you mean 'mode'\?"):
        load(shipped, ["modules.vae.mdoe=x"])


def test_a_binary_file_as_configuration_is_one_line(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08\x07\x12\x80\xff binary")
    with pytest.raises(ConfigError, match=r"model.onnx: not a YAML configuration \(not UTF-8 text: byte 0x80 at offset 3\)"):
        load(junk)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_as_configuration_is_refused_at_the_size_cap(device):
    """``hltrun /dev/zero`` read for ever and ate all memory; now it stops at the cap, in one line."""
    with pytest.raises(ConfigError, match=rf"^{device}: not a YAML configuration \(more than 4 MB, the most a "
                                          rf"configuration may hold\)$"):
        load(device)


def test_a_configuration_from_a_pipe_is_read(tmp_path, write_config):
    """``hltrun <(cat cfg.yaml)``: the capped read takes a FIFO like a file."""
    import os
    import threading

    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(BASE,), daemon=True)  # never holds pytest open
    writer.start()
    try:
        assert load(fifo).process == "TEST"
    finally:
        writer.join(timeout=10)


def _load_in_a_thread(fifo):
    """``load(fifo)``, or the ConfigError it raised; a load blocked on the FIFO fails the test."""
    from tests.helpers import beside_a_fifo

    return beside_a_fifo(fifo, lambda: load(fifo))


def test_a_fifo_no_program_writes_into_is_refused_not_waited_on_for_ever(tmp_path, monkeypatch):
    """``mkfifo cfg.yaml; hltrun cfg.yaml`` (or ``hltcard --config`` such a file) blocked in open() for ever."""
    import os

    from hltrun.framework import config

    monkeypatch.setattr(config, "FIFO_WRITER_WAIT_S", 0.2, raising=False)
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    refused = _load_in_a_thread(fifo)
    assert isinstance(refused, ConfigError)
    assert str(refused) == (f"{fifo}: a FIFO that no program wrote into in 0.2 s (nor holds open to write): start "
                            "its writer first, or give the configuration file itself")


def test_a_pipe_whose_writer_is_slow_is_waited_for(tmp_path, monkeypatch):
    """``hltrun <(slow command)``: a writer holds the pipe open, so the job waits for its text past the wait for
    a writer, as for any pipe."""
    import os
    import threading
    import time

    from hltrun.framework import config

    monkeypatch.setattr(config, "FIFO_WRITER_WAIT_S", 0.2, raising=False)
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)

    fd = os.open(fifo, os.O_RDWR)  # the writer holds it open before the job starts (as the shell's <(...) does)

    def slow_writer() -> None:
        time.sleep(1.0)  # past the wait for a writer
        os.write(fd, BASE.encode())
        os.close(fd)

    threading.Thread(target=slow_writer, daemon=True).start()
    assert _load_in_a_thread(fifo).process == "TEST"


def test_a_fifo_read_as_the_descriptor_1024_or_more_is_read(tmp_path):
    """A process holding over 1024 files open (a notebook, a tool loading configurations in a loop) gets a descriptor
    that ``select`` refuses: the FIFO configuration ended in ``ValueError: filedescriptor out of range in select()``."""
    import os
    import resource
    import threading

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"at most {hard} open files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    held = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while held[-1] < 1023:  # every descriptor below 1024 taken: the configuration gets one above
            held.append(os.open(os.devnull, os.O_RDONLY))
        fifo = tmp_path / "cfg.yaml"
        os.mkfifo(fifo)
        threading.Thread(target=lambda: fifo.write_text(BASE), daemon=True).start()
        assert _load_in_a_thread(fifo).process == "TEST"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("text", ["1e3", "1E3", "5e-1", "+2e2", "1_000.5"])
def test_a_plain_exponent_is_a_float_in_the_file_and_on_the_command_line(write_config, text):
    """PyYAML reads ``1e3`` (no dot: YAML 1.1) as a string; a float setting takes it as the number."""
    expected = float(text)
    from_file = load(write_config(BASE + f"options: {{budgetMs: {text}}}\n"))
    from_override = load(write_config(BASE), [f"options.budgetMs={text}"])
    assert from_file.options.budgetMs == from_override.options.budgetMs == expected
    assert isinstance(from_file.options.budgetMs, float)


def test_a_plain_exponent_threshold_on_the_shipped_path():
    cfg = load("configs/path.yaml", ["modules.anomalyFilter.threshold=5e-1", "options.budgetMs=1e3"])
    assert cfg.modules["anomalyFilter"].params.threshold == 0.5 and cfg.options.budgetMs == 1000.0


@pytest.mark.parametrize("field, text, expected", [
    ("budgetMs", "abc", "options.budgetMs: expected float, got 'abc'"),
    ("budgetMs", "nan", "options.budgetMs: expected float, got 'nan'"),  # parses, but not finite
    ("budgetMs", "1e999", "options.budgetMs: expected float, got '1e999'"),
    ("budgetMs", "'1 e3'", "options.budgetMs: expected float, got '1 e3'"),
    ("numberOfThreads", "1e0", "options.numberOfThreads: expected int, got '1e0'"),  # float fields only
])
def test_text_that_is_not_a_finite_number_is_still_refused(write_config, field, text, expected):
    assert expected in error_of(write_config, BASE + f"options: {{{field}: {text}}}\n")
    assert expected in error_of(write_config, BASE, f"options.{field}={text}")


@pytest.mark.parametrize("where, override", [("configuration file", None),
                                             ("model file", "modules.vae.model=https://host/x/a.onnx")])
def test_a_remote_configuration_or_model_is_one_line_naming_the_url(where, override):
    url = "https://host/x/cfg.yaml" if override is None else override.partition("=")[2]
    with pytest.raises(ConfigError, match=rf"{where} {url} is a remote URL; hltrun reads local files only"):
        load(url) if override is None else load("configs/path.yaml", [override])


@pytest.mark.parametrize("override, where", [("modules.out.file=root://eos.cern.ch//store/o.root", "modules.out: file"),
                                             ("options.reportDir=https://host/reports", "options: reportDir")])
def test_a_remote_destination_is_one_line_naming_the_url(override, where, tmp_path, monkeypatch):
    """Taken as a local name, root://h//o.root would be written to ./root:/h/o.root."""
    monkeypatch.chdir(tmp_path)
    url = override.partition("=")[2]
    with pytest.raises(ConfigError, match=rf"{where}: {url} is a remote URL; hltrun writes local files only"):
        load(str(Path(__file__).parents[1] / "configs/path.yaml"), [override])
    assert list(tmp_path.iterdir()) == []


def test_dependency_cycle_is_reported(write_config):
    text = BASE.replace("sq: {type: TestSquare, src: source}",
                        "sq: {type: TestSquare, src: cube}\n  cube: {type: TestSquare, src: sq}")
    assert "dependency cycle sq -> cube -> sq" in error_of(write_config, text)


@pytest.mark.parametrize("label", ["failure", "stopped_by_signal"])
def test_a_label_a_report_file_uses_for_its_marks_is_refused(write_config, label):
    """scores.root keeps one folder per filter label beside the marks of a job that did not end well
    (provenance.stop_marks): a filter labelled ``failure`` made a whole job's file hold a key ``failure``,
    which is how a reader tells a failed job's file."""
    text = BASE.replace("even", label)
    assert (f"modules.{label}: the label '{label}' is reserved: scores.root, timing.root and resources.json use "
            f"'{label}' to mark a job that did not end well") in error_of(write_config, text)


def test_output_module_must_sit_on_an_endpath(write_config, tmp_path):
    text = BASE.replace("paths:", f"  out: {{type: RootOutputModule, file: {tmp_path / 'o.root'}}}\npaths:")
    text = text.replace("p: [even, sq]", "p: [even, sq, out]")
    assert "output module 'out' belongs on an endpath" in error_of(write_config, text)


def test_select_events_must_name_a_path(write_config, tmp_path):
    text = BASE.replace("paths:", f"  out: {{type: RootOutputModule, file: {tmp_path / 'o.root'}, select_events: [q]}}\npaths:")
    text += "endpaths:\n  e: [out]\n"
    assert "modules.out.select_events: 'q' is not a path" in error_of(write_config, text)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load(tmp_path / "nope.yaml")


def test_overrides_are_typed_by_yaml(write_config):
    cfg = load(write_config(BASE), ["options.numberOfThreads=3", "modules.even.divisor=5", "options.accelerators=[cpu]"])
    assert cfg.options.streams_in_flight == 3 and cfg.modules["even"].params.divisor == 5
    assert cfg.options.accelerators == ["cpu"]


def test_override_of_list_item_and_new_key(write_config):
    data = apply_overrides({"paths": {"p": ["a", "b"]}}, ["paths.p.1=c", "options.maxEvents=7"])
    assert data == {"paths": {"p": ["a", "c"]}, "options": {"maxEvents": 7}}


@pytest.mark.parametrize("override, expected", [
    ("options.streams", "is not of the form key.path=value"),
    ("paths.p.9=x", "is not an index of a 2-item list"),
    ("process.x=1", "process is a value, not a mapping"),
])
def test_bad_overrides(write_config, override, expected):
    assert expected in error_of(write_config, BASE, override)


@pytest.mark.parametrize("override, error", [
    ("modules.out.keep=[vae,nosuch]", "modules.out.keep[1]: consumes 'nosuch', but 'nosuch' is not a module label"),
    ("modules.out.keep=[vae,batcher:nosuch]", "modules.out.keep[1]: consumes 'batcher:nosuch', but 'batcher' (JetBatcher) "
                                              "produces no instance 'nosuch'"),
    ("modules.out.keep=[vae,anomalyFilter]", "modules.out.keep[1]: consumes 'anomalyFilter', but 'anomalyFilter' "
                                             "(AnomalyScoreFilter) produces no main product"),
    ("modules.vae.src=nosuch", "modules.vae.src: consumes 'nosuch', but 'nosuch' is not a module label"),
])
def test_a_bad_input_tag_from_an_override_names_the_override_and_the_item(override, error):
    """The tag's own key path (``keep[1]``) is in the message, so the override that set it is blamed, not the file."""
    with pytest.raises(ConfigError) as info:
        load("configs/path.yaml", [override])
    assert str(info.value).startswith(f"command line (override {override!r}): {error}")


def test_a_bad_input_tag_in_the_file_names_the_file_and_the_item(write_config):
    text = BASE.replace("  sq: {type: TestSquare, src: source}",
                        "  sq: {type: TestSquare, src: source}\n  out: {type: RootOutputModule, file: o.root, keep: [sq, nosuch]}")
    assert "modules.out.keep[1]: consumes 'nosuch'" in error_of(write_config, text + "endpaths:\n  e: [out]\n")


def test_override_error_is_validated_like_the_file(write_config):
    assert "options.numberOfThreads: expected int, got 'many'" in error_of(write_config, BASE, "options.numberOfThreads=many")


def test_dump_round_trips(write_config, tmp_path):
    cfg = load(write_config(BASE))
    again = load(write_config(cfg.dump(), "dumped.yaml"))
    assert again.to_dict() == cfg.to_dict()
    assert "divisor: 2" in cfg.dump() and "fail_on: -1" in cfg.dump()  # defaults are filled in


@pytest.mark.parametrize("text, expected", [
    ("source.files=[bad\udcff.root, ok.root]", ["bad\udcff.root", "ok.root"]),
    ('source.files=["d\udce9j\udce0.root"]', ["d\udce9j\udce0.root"]),
    ("source.files=bad\udcff.root", "bad\udcff.root"),
])
def test_an_override_naming_a_file_whose_name_is_not_utf8_keeps_its_bytes(text, expected):
    """``source.files=[bad$'\\xff'.root]`` (a Latin-1 file name: Python hands its byte over as a lone
    surrogate, which YAML refuses anywhere) was taken as text, then refused as ``source.files: expected
    list of str, got '[bad\\udcff.root]'``, a list of str it was. It is parsed as YAML, the bytes kept."""
    assert apply_overrides({}, [text])["source"]["files"] == expected


def test_dask_settings_of_a_local_job_are_said(write_config, caplog):
    """``options.executor.address`` (or workers, ...) without ``type: dask`` ran the job in this process
    and said nothing: a user who forgot the type took a local run for a run on the cluster. One warning
    names them; maxTimingRows (read locally too) and a dask job's own settings are not named."""
    import logging

    logger = logging.getLogger("hltrun")  # the CLI's logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    path = write_config(BASE)
    try:
        with caplog.at_level("WARNING", logger="hltrun"):
            cfg = load(path, ["options.executor.address=tcp://127.0.0.1:8786", "options.executor.workers=4"])
            said = [r.getMessage() for r in {id(r): r for r in caplog.records}.values()]  # once per record
            caplog.clear()
            load(path, ["options.executor.maxTimingRows=1000"])
            load(path, ["options.executor.type=dask", "options.executor.workers=4"])
    finally:
        logger.removeHandler(caplog.handler)
    assert cfg.options.executor.type == "local"
    assert said == ["options.executor: address: tcp://127.0.0.1:8786, workers: 4: read by the Dask executor only; "
                    "this job runs locally (type: local), as without them (set options.executor.type=dask, or "
                    "hltrun --dask N)"]
    assert not [r for r in caplog.records if "Dask executor only" in r.getMessage()]


def test_a_name_yaml_read_as_a_boolean_is_told_to_quote_it(tmp_path):
    """A prescale column named ``off`` (or ``no``, ``on``): YAML 1.1 reads the bare word as a boolean, and the line
    said only "expected str, got False". A boolean where a number is expected gets no such hint."""
    import yaml

    from hltrun.framework.errors import ConfigError
    from hltrun.framework.schema import convert

    for word, shown in (("off", "False"), ("no", "False"), ("on", "True"), ("yes", "True")):
        value = yaml.safe_load(f"[{word}]")[0]
        with pytest.raises(ConfigError, match=rf"lvl1Labels\[2\]: expected str, got {shown} \(YAML reads an "
                                              rf"unquoted .* as a boolean: quote the name"):
            convert(value, str, "services.PrescaleService.lvl1Labels[2]")
    with pytest.raises(ConfigError) as err:
        convert(False, int, "options.numberOfThreads")
    assert "quote" not in str(err.value)
