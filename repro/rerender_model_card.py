"""Re-render data/models/README.md from the shipped metrics.json with the current eval_card code."""
import argparse, json, sys
from pathlib import Path
from hltrun.tools.physics.eval_card import model_card, kept_sections, OTHER_TOOLS_SECTIONS
from hltrun.tools.physics.evaluate_models import histories
d = Path("data/models")
m = json.loads((d / "metrics.json").read_text())
args = argparse.Namespace(models_dir=d)
old = (d / "README.md").read_text()
kept = kept_sections(old, OTHER_TOOLS_SECTIONS)
text = model_card(m, histories(d), args, "python tools/physics/evaluate_models.py ")
new = text.rstrip("\n") + ("\n\n" + kept if kept else "") + "\n"
out = Path(sys.argv[1]); out.write_text(new)
