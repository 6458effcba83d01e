"""Makes root_written.root with ROOT itself (``pip install ROOT``; not needed to run the tests): trees
as other writers than uproot make them, which uproot cannot write.

* ``ntuple/Events``: a CMSSW analyzer's flat ntuple in its TFileService folder: ``std::vector<float>`` jets,
  ``std::vector<std::vector<float>>`` constituents per jet (layout nested), written twice so that the
  file holds the cycles ``Events;1`` (an AutoSave's first half) and ``Events;2`` (all entries);
* ``Delphes``: TClonesArray object branches split into fields (``Jet.PT``, ``EFlowTrack.PT``), with a
  per-jet constituent count (``Jet.NCons``) and the constituents of each event's jets one after the other.

Run: ``python tests/data/make_root_written.py`` (writes beside itself).
"""

from pathlib import Path

import numpy as np
import ROOT

ROOT.gInterpreter.Declare("""
#include "TObject.h"
class DJet : public TObject { public: Float_t PT; Float_t Eta; Float_t Phi; Float_t Mass; Int_t NCons; ClassDef(DJet, 1) };
class DCand : public TObject { public: Float_t PT; Float_t Eta; Float_t Phi; ClassDef(DCand, 1) };
""")
rng = np.random.default_rng(2026)
N = 12
f = ROOT.TFile(str(Path(__file__).with_name("root_written.root")), "RECREATE")
f.SetCompressionSettings(505)  # ROOT's default since 6.30: ZSTD 5

folder = f.mkdir("ntuple")
folder.cd()
t = ROOT.TTree("Events", "flat ntuple")
V = ROOT.std.vector
event = np.zeros(1, np.uint64)
t.Branch("event", event, "event/l")
jets = {k: V("float")() for k in ("pt", "eta", "phi", "mass")}
cands = {k: V(V("float"))() for k in ("pt", "eta", "phi")}
for k, v in jets.items():
    t.Branch(f"jet_{k}", v)
for k, v in cands.items():
    t.Branch(f"jet_pf_{k}", v)
for i in range(N):
    event[0] = 100 + i
    for v in (*jets.values(), *cands.values()):
        v.clear()
    for _ in range(int(rng.integers(0, 4))):
        for k, lo, hi in (("pt", 200, 900), ("eta", -2, 2), ("phi", -3, 3), ("mass", 10, 200)):
            jets[k].push_back(float(rng.uniform(lo, hi)))
        n = int(rng.integers(0, 8))
        for k, values in (("pt", rng.exponential(10, n) + 0.5), ("eta", rng.uniform(-2, 2, n)), ("phi", rng.uniform(-3, 3, n))):
            inner = V("float")()
            for x in values:
                inner.push_back(float(x))
            cands[k].push_back(inner)
    t.Fill()
    if i == N // 2:
        t.Write()  # Events;1: half the entries, as an AutoSave leaves them
t.Write()

f.cd()
d = ROOT.TTree("Delphes", "Delphes-like")
jet_array, cand_array = ROOT.TClonesArray("DJet"), ROOT.TClonesArray("DCand")
d.Branch("Jet", jet_array, 32000, 99)
d.Branch("EFlowTrack", cand_array, 32000, 99)
for i in range(N):
    jet_array.Clear()
    cand_array.Clear()
    n = 0
    for k in range(int(rng.integers(0, 3))):
        j = jet_array.ConstructedAt(k)
        j.PT, j.Eta, j.Phi, j.Mass = (float(rng.uniform(200, 900)), float(rng.uniform(-2, 2)),
                                     float(rng.uniform(-3, 3)), float(rng.uniform(10, 200)))
        j.NCons = int(rng.integers(0, 6))
        for _ in range(j.NCons):
            c = cand_array.ConstructedAt(n)
            c.PT, c.Eta, c.Phi = float(rng.uniform(1, 50)), float(rng.uniform(-2, 2)), float(rng.uniform(-3, 3))
            n += 1
    d.Fill()
d.Write()
f.Close()
