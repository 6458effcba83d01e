"""The MemoryReport as CMSSW's SimpleMemoryCheck prints it at the end of the job, line for line.

Followed: ``FWCore/Services/plugins/SimpleMemoryCheck.cc`` of current CMSSW (the form with
``MemoryReport> EndJob:`` and ``Peak virtual size X Mbytes (RSS Y)``; the older cms-sw/cmssw@dd84d9d
printed ``Peak virtual size X Mbytes`` / ``Peak rss size X Mbytes`` without the parenthesis). The
bookkeeping is SimpleMemoryCheck's ``updateEventStats`` / ``updateModuleMemoryStats``, redone here:

* ``count`` is the number of events finished; with ``ignoreTotal`` = N (default 1, as in CMSSW's
  ``fillDescriptions``) events 1..N-1 are not looked at and event N is the baseline (deltas 0);
* the "key events": the three largest VSIZE (T1..T3), the largest VSIZE increase over the running
  peak (M) with its neighbours (L1, L2 before it, R1, R2 after it), the three largest RSS
  (RssT1..T3) and the three largest RSS increases (DeltaRssT1..T3);
* with ``moduleMemorySummary``, per module label: VSIZE change across each call, split into
  calls during the early ignored events and after them.

Values are MB (bytes / 1024**2, as ProcInfoFetcher), printed like C++'s default ``ostream << double``
(six significant digits, ``%g``). Not printed, because hltrun has nothing behind them: the jemalloc
lines (CMSSW prints them only when the process runs on jemalloc; CPython uses glibc malloc), and the
``MemoryCheck:`` warnings logged during the job on every new peak (hltrun's MemoryReport is an
end-of-job summary; the per-event RSS curve is in hltrun.json and the HTML report).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Iterable

MB = 1024.0 * 1024.0

EventKey = tuple[int, int, int]  # run, luminosityBlock, event


def g(x: float) -> str:
    """C++ ``std::ostream << double`` with the default precision 6 (``%g``)."""
    return f"{x:g}"


def event_id(e: EventKey) -> str:
    """edm::EventID's ``operator<<``: ``oStream << "run: " << iID.run() << " lumi: " << iID.luminosityBlock()
    << " event: " << iID.event();``"""
    return f"run: {e[0]} lumi: {e[1]} event: {e[2]}"


@dataclass
class SignificantEvent:
    """SimpleMemoryCheck::SignificantEvent (MB)."""

    count: int = 0
    event: EventKey = (0, 0, 0)
    vsize: float = 0.0
    delta_vsize: float = 0.0
    rss: float = 0.0
    delta_rss: float = 0.0

    def __str__(self) -> str:
        # os << "[" << se.count << "] " << se.event << "  vsize = " << se.vsize << " deltaVsize = " << se.deltaVsize
        #    << " rss = " << se.rss << " delta = " << se.deltaRss;
        return (f"[{self.count}] {event_id(self.event)}  vsize = {g(self.vsize)} deltaVsize = {g(self.delta_vsize)}"
                f" rss = {g(self.rss)} delta = {g(self.delta_rss)}")


@dataclass
class SignificantModule:
    """SimpleMemoryCheck::SignificantModule (MB of VSIZE)."""

    post_early_count: int = 0
    total_delta_vsize: float = 0.0
    max_delta_vsize: float = 0.0
    event_max_delta_v: EventKey = (0, 0, 0)
    total_early_vsize: float = 0.0
    max_early_vsize: float = 0.0


@dataclass
class EndJobMemory:
    """What ``postEndJob`` reads: ``/proc/self/statm`` and ``/proc/self/smaps`` (MB)."""

    vsize: float = 0.0
    rss: float = 0.0
    smaps: dict[str, float] | None = None  # pss, private, anon_huge, {so,pcm,other,mmap}_{rss,vsize}


@dataclass
class MemoryCheckState:
    """SimpleMemoryCheck's end-of-job statistics for one process (mergeable per worker: the later wins)."""

    ignore_total: int = 1
    count: int = 0
    events: dict[str, SignificantEvent] = field(default_factory=dict)
    modules: dict[str, SignificantModule] = field(default_factory=dict)
    end: EndJobMemory = field(default_factory=EndJobMemory)


EVENT_SLOTS = ("T1", "T2", "T3", "M", "L1", "L2", "R1", "R2", "RssT1", "RssT2", "RssT3",
               "DeltaRssT1", "DeltaRssT2", "DeltaRssT3")


class MemoryCheck:
    """Feeds a ``MemoryCheckState`` from the Memory service's signals; thread-safe (streams)."""

    def __init__(self, ignore_total: int = 1) -> None:
        self.state = MemoryCheckState(ignore_total, events={k: SignificantEvent() for k in EVENT_SLOTS})
        self._lock = threading.Lock()
        self._ended = False

    def post_event(self, vsize_mb: float, rss_mb: float, event: EventKey) -> None:
        """One finished event: CMSSW's ``postEvent`` (``++count_``) then ``updateEventStats``."""
        with self._lock:
            s = self.state
            s.count += 1
            _update_event_stats(s, vsize_mb, rss_mb, event)

    def module_call(self, label: str, delta_vsize_mb: float, event: EventKey) -> None:
        """One module call's VSIZE change: ``updateModuleMemoryStats`` (early while count < ignoreTotal)."""
        with self._lock:
            s = self.state
            m = s.modules.setdefault(label, SignificantModule())
            if s.count < s.ignore_total:
                m.total_early_vsize += delta_vsize_mb
                if delta_vsize_mb > m.max_early_vsize:
                    m.max_early_vsize = delta_vsize_mb
            else:
                m.post_early_count += 1
                m.total_delta_vsize += delta_vsize_mb
                if delta_vsize_mb > m.max_delta_vsize:
                    m.max_delta_vsize = delta_vsize_mb
                    m.event_max_delta_v = event

    def end_job(self, vsize_bytes: int, rss_bytes: int) -> None:
        self.state.end = EndJobMemory(vsize_bytes / MB, rss_bytes / MB, read_smaps())
        self._ended = True

    def snapshot(self, vsize_bytes: int, rss_bytes: int) -> MemoryCheckState:
        """A copy of the state. Before end_job its EndJob figures are the memory now: a Dask worker's Process
        runs unit after unit and never ends its job, so each worker's ``MemoryReport> EndJob`` line read
        ``virtual size 0 Mbytes, RSS 0 Mbytes``; now it is the worker's memory when its last unit ended."""
        state = copy_state(self.state)
        if not self._ended:
            state.end = EndJobMemory(vsize_bytes / MB, rss_bytes / MB, read_smaps())
        return state


def _update_event_stats(s: MemoryCheckState, vsize: float, rss: float, e: EventKey) -> None:
    ev = s.events
    if s.count < s.ignore_total:
        return

    def at(dv: float, dr: float) -> SignificantEvent:
        return SignificantEvent(s.count, e, vsize, dv, rss, dr)

    if s.count == s.ignore_total:  # the baseline event
        for slot in ("T1", "M", "RssT1", "DeltaRssT1"):
            ev[slot] = at(0.0, 0.0)
        return
    delta_vsize = vsize - ev["T1"].vsize
    if vsize > ev["T1"].vsize:
        ev["T3"], ev["T2"] = ev["T2"], ev["T1"]
        ev["T1"] = at(delta_vsize, rss - ev["T2"].rss)  # deltaRss against the previous T1
    elif vsize > ev["T2"].vsize:
        ev["T3"] = ev["T2"]
        ev["T2"] = at(delta_vsize, rss - ev["T1"].rss)
    elif vsize > ev["T3"].vsize:
        ev["T3"] = at(delta_vsize, rss - ev["T1"].rss)

    if delta_vsize > ev["M"].delta_vsize:
        ev["L2"] = ev["L1"] if ev["L1"].delta_vsize >= ev["R1"].delta_vsize else ev["R1"]
        ev["L1"] = ev["M"]
        ev["M"] = at(delta_vsize, rss - ev["L1"].rss)  # against the previous M
        ev["R1"], ev["R2"] = SignificantEvent(), SignificantEvent()
    elif delta_vsize > ev["R1"].delta_vsize:
        ev["R2"] = ev["R1"]
        ev["R1"] = at(delta_vsize, rss - ev["M"].rss)
    elif delta_vsize > ev["R2"].delta_vsize:
        ev["R2"] = at(delta_vsize, rss - ev["R1"].rss)

    delta_rss = rss - ev["RssT1"].rss
    entry = at(delta_vsize, delta_rss)
    _keep_top3(ev, "RssT", rss, lambda e: e.rss, entry)
    _keep_top3(ev, "DeltaRssT", delta_rss, lambda e: e.delta_rss, entry)


def _keep_top3(ev: dict, prefix: str, value: float, key, entry) -> None:  # noqa: ANN001
    """Slots prefix1 > prefix2 > prefix3 ranked by ``key``: ``entry`` takes its place when ``value``
    beats one, the lower ones move down (SimpleMemoryCheck's T1/T2/T3 bookkeeping)."""
    t1, t2, t3 = (f"{prefix}{i}" for i in (1, 2, 3))
    if value > key(ev[t1]):
        ev[t3], ev[t2], ev[t1] = ev[t2], ev[t1], entry
    elif value > key(ev[t2]):
        ev[t3], ev[t2] = ev[t2], entry
    elif value > key(ev[t3]):
        ev[t3] = entry


def read_smaps(path: str = "/proc/self/smaps") -> dict[str, float] | None:
    """Sum ``/proc/self/smaps`` as SimpleMemoryCheck::fetchSmaps does: Pss, Private_*, AnonHugePages,
    and Rss / Size per kind of mapping (no path: mmap; ``.pcm``; ``.so``; other file; stack; other).

    Read by hand: psutil's ``memory_maps`` has no AnonHugePages and no Private_Hugetlb, so CMSSW's
    sums could not be made from it (and it parses the same file, once, at the end of the job)."""
    out = {k: 0.0 for k in ("pss", "private", "anon_huge", "so_rss", "so_vsize", "pcm_rss", "pcm_vsize",
                            "other_rss", "other_vsize", "mmap_rss", "mmap_vsize")}
    section = "rest"
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("ascii", "replace")
                head, colon, tail = line.partition(":")
                if colon and not tail.startswith(" "):  # a mapping line: "addr-addr perms off dev inode [path]"
                    fields = line.split(None, 5)
                    name = fields[5].strip() if len(fields) > 5 else ""
                    if not name:
                        section = "mmap"
                    elif name.startswith("/"):
                        section = "pcm" if name.endswith(".pcm") else "so" if ".so" in name else "other"
                    else:
                        section = "rest"  # [stack], [heap], [vdso]...: in neither sum CMSSW prints
                    continue
                kb = tail.split()
                if not kb or not kb[0].isdigit():
                    continue
                value = int(kb[0]) / 1024.0
                if head.startswith("Private_"):
                    out["private"] += value
                elif head == "Pss":
                    out["pss"] += value
                elif head == "AnonHugePages":
                    out["anon_huge"] += value
                elif head == "Rss" and section != "rest":
                    out[f"{section}_rss"] += value
                elif head == "Size" and section != "rest":
                    out[f"{section}_vsize"] += value
    except OSError:  # not Linux: CMSSW prints the line without the smaps part
        return None
    return out


def merge_states(a: dict[str, MemoryCheckState] | None,
                 b: dict[str, MemoryCheckState] | None) -> dict[str, MemoryCheckState] | None:
    """Per worker (one SimpleMemoryCheck per process): the state that has seen more events."""
    if not a or not b:
        return a or b
    out = dict(a)
    for worker, state in b.items():
        if worker not in out or state.count >= out[worker].count:
            out[worker] = state
    return out


def report_lines(s: MemoryCheckState) -> list[str]:
    """SimpleMemoryCheck::postEndJob's ``MemoryReport`` message, one string per printed line."""
    ev, end = s.events, s.end
    # log << "MemoryReport> EndJob: virtual size " << current_->vsize << " Mbytes, RSS " << current_->rss
    #     << " Mbytes";
    first = f"MemoryReport> EndJob: virtual size {g(end.vsize)} Mbytes, RSS {g(end.rss)} Mbytes"
    lines = []
    if end.smaps is not None:
        m = end.smaps
        files_v = m["so_vsize"] + m["pcm_vsize"] + m["other_vsize"]
        files_r = m["so_rss"] + m["pcm_rss"] + m["other_rss"]
        # log << ", PSS " << currentSmaps_.pss_ << " MBytes, Private " << currentSmaps_.private_ << "\n AnonHugePages "
        #     << currentSmaps_.anonHugePages_ << " Mbytes\n" << " mmapped memory pages " << mmapVSize << ...
        lines += [f"{first}, PSS {g(m['pss'])} MBytes, Private {g(m['private'])}",
                  f" AnonHugePages {g(m['anon_huge'])} Mbytes",
                  f" mmapped memory pages {g(m['mmap_vsize'])} Mbytes (VSize), {g(m['mmap_rss'])} MBytes (RSS)",
                  f" mmapped file pages {g(files_v)} Mbytes (VSize), {g(files_r)} MBytes (RSS)",
                  f"  of which .so's {g(m['so_vsize'])} Mbytes (VSize), {g(m['so_rss'])} MBytes (RSS)",
                  f"  of which PCM's {g(m['pcm_vsize'])} Mbytes (VSize), {g(m['pcm_rss'])} MBytes (RSS)",
                  f"  of which other {g(m['other_vsize'])} Mbytes (VSize), {g(m['other_rss'])} MBytes (RSS)"]
    else:
        lines.append(first)
    # log << "MemoryReport> Peak virtual size " << eventT1_.vsize << " Mbytes (RSS " << eventT1_.rss << ")";
    lines.append(f"MemoryReport> Peak virtual size {g(ev['T1'].vsize)} Mbytes (RSS {g(ev['T1'].rss)})")
    lines.append(" Key events increasing vsize: ")  # "\n Key events increasing vsize: \n"
    lines += [str(ev[k]) for k in ("L2", "L1", "M", "R1", "R2", "T3", "T2", "T1")]
    # << "\nMemoryReport> Peak rss size " << eventRssT1_.rss << " Mbytes (VSIZE " << eventRssT1_.vsize << ")";
    lines.append(f"MemoryReport> Peak rss size {g(ev['RssT1'].rss)} Mbytes (VSIZE {g(ev['RssT1'].vsize)})")
    lines.append(" Key events increasing rss:")  # "\n Key events increasing rss:\n"
    lines += [str(ev[k]) for k in ("RssT3", "RssT2", "RssT1", "DeltaRssT3", "DeltaRssT2", "DeltaRssT1")]
    return lines


def module_report_lines(s: MemoryCheckState) -> list[str]:
    """The ``ModuleMemoryReport`` message (moduleMemorySummary), modules in label order (a std::map)."""
    lines = ["ModuleMemoryReport> Each line has module label and: ",
             "  (after early ignored events) ",
             "    count of times module executed; average increase in vsize ",
             "    maximum increase in vsize; event on which maximum occurred ",
             "  (during early ignored events) ",
             "    total and maximum vsize increases ",
             " "]  # mmr << "    total and maximum vsize increases \n \n";
    for label in sorted(s.modules):
        m = s.modules[label]
        if m.total_delta_vsize == 0 and m.total_early_vsize == 0:  # as CMSSW: skipped
            continue
        # mmr << im->first << ": " << "n = " << m.postEarlyCount [<< " avg = " << total/n]
        #     << " max = " << m.maxDeltaVsize << " " << m.eventMaxDeltaV [<< " early total: " << .. << " max: " << ..]
        line = f"{label}: n = {m.post_early_count}"
        if m.post_early_count > 0:
            line += f" avg = {g(m.total_delta_vsize / m.post_early_count)}"
        line += f" max = {g(m.max_delta_vsize)} {event_id(m.event_max_delta_v)}"
        if m.total_early_vsize > 0:
            line += f" early total: {g(m.total_early_vsize)} max: {g(m.max_early_vsize)}"
        lines.append(line)
    return lines


def to_dict(s: MemoryCheckState) -> dict:
    """The same figures for hltrun.json (MB), keyed like the FrameworkJobReport's ApplicationMemory."""
    ev = s.events
    return {
        "ignoreTotal": s.ignore_total, "count": s.count,
        "PeakValueVsize": ev["T1"].vsize, "PeakValueRss": ev["RssT1"].rss,
        "end": {"vsize": s.end.vsize, "rss": s.end.rss, "smaps": s.end.smaps},
        "events": {k: {"count": e.count, "event": list(e.event), "vsize": e.vsize, "deltaVsize": e.delta_vsize,
                       "rss": e.rss, "deltaRss": e.delta_rss} for k, e in ev.items()},
        "modules": {label: {"postEarlyCount": m.post_early_count, "totalDeltaVsize": m.total_delta_vsize,
                            "maxDeltaVsize": m.max_delta_vsize, "eventMaxDeltaV": list(m.event_max_delta_v),
                            "totalEarlyVsize": m.total_early_vsize, "maxEarlyVsize": m.max_early_vsize}
                    for label, m in sorted(s.modules.items())},
    }


def copy_state(s: MemoryCheckState) -> MemoryCheckState:
    """A snapshot the service can keep updating after (events and modules copied)."""
    return replace(s, events={k: replace(v) for k, v in s.events.items()},
                   modules={k: replace(v) for k, v in s.modules.items()}, end=replace(s.end))


__all__: Iterable[str] = ("MemoryCheck", "MemoryCheckState", "report_lines", "module_report_lines", "merge_states",
                          "read_smaps", "to_dict", "copy_state")
