"""Parsers of the printed reports, for tests that compare them with the JSON files and the output.

The ONE place that knows the text layouts: when the TrigReport or TimeReport layout changes (e.g.
to the exact CMSSW Schedule.cc / FastTimerService format), only this file changes. The parsers read
rows by their shape (numbers, then a name) under each table's title line, not by column offsets.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def _sections(text: str, head: str) -> list[tuple[str, list[str]]]:
    """Split ``head``-prefixed lines into (title, body lines); a title line has a run of dashes."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if not line.startswith(head):
            continue
        rest = line[len(head):].strip()
        if re.match(r"-{4,}", rest):
            title = re.sub(r"-{3,}", " ", rest)
            out.append((" ".join(title.split()), []))  # dash runs removed, spaces single, [unit] kept
        elif out:
            out[-1][1].append(rest)
    return out


# ---------------------------------------------------------------------- TrigReport
def parse_trigreport(text: str) -> dict[str, Any]:
    """{'events': {total, passed, failed}, 'paths'/'endpaths': {name: {trigger, bit, executed, passed,
    failed, error}}, 'modules_in_path': {path: [{name, visited, passed, failed, error}]}, 'path_kind':
    {path: 'Path' | 'EndPath'}, 'modules': {name: {...}}}."""
    m = re.search(r"TrigReport Events total = (\d+) passed = (\d+) failed = (\d+)$", text, re.M)
    if not m:
        raise ValueError("no TrigReport event summary")
    doc: dict[str, Any] = {"events": dict(zip(("total", "passed", "failed"), map(int, m.groups()))),
                           "paths": {}, "endpaths": {}, "modules_in_path": {}, "modules": {}}
    for title, body in _sections(text, "TrigReport"):
        if title.startswith(("Path Summary", "End-Path Summary")):
            table = doc["endpaths"] if title.startswith("End-Path") else doc["paths"]
            for line in body:
                f = line.split()
                if len(f) >= 7 and all(x.isdigit() for x in f[:6]):
                    table[" ".join(f[6:])] = dict(zip(("trigger", "bit", "executed", "passed", "failed", "error"),
                                                      map(int, f[:6])))
        elif title.startswith("Modules in"):
            kind, name = (part.strip() for part in title[len("Modules in"):].split(":", 1))
            name = name.split("[")[0].strip()
            doc.setdefault("path_kind", {})[name] = kind.replace("-", "")  # Schedule.cc: "End-Path"
            entries = []
            for line in body:
                f = line.split()
                if len(f) >= 7 and all(x.isdigit() for x in f[:6]):
                    entries.append({"name": " ".join(f[6:]), "trigger": int(f[0]), "bit": int(f[1]),
                                    **dict(zip(("visited", "passed", "failed", "error"), map(int, f[2:6])))})
            doc["modules_in_path"][name] = entries
        elif title.startswith("Module Summary"):
            for line in body:
                f = line.split()
                if len(f) >= 6 and all(x.isdigit() for x in f[:5]):
                    doc["modules"][" ".join(f[5:])] = dict(zip(("visited", "executed", "passed", "failed", "error"),
                                                               map(int, f[:5])))
    return doc


# ---------------------------------------------------------------------- TimeReport
def parse_timereport(text: str) -> dict[str, Any]:
    """Seconds, as printed. {'event': {label: value}, 'paths'/'endpaths': {name: (per event, per exec)},
    'modules_in_path': {path: {label: (per event, per visit)}}, 'modules_real'/'modules_cpu':
    {label: (per event, per exec, per visit)}}. The Real Module Summary is the TimeReport's, the CPU one and
    the source / overhead lines are the LoopReport's (hltrun's figures, outside cmsRun's TimeReport)."""
    doc: dict[str, Any] = {"event": {}, "paths": {}, "endpaths": {}, "modules_in_path": {},
                           "modules_real": {}, "modules_cpu": {}}
    sections = _sections(text, "TimeReport") + _sections(text, "LoopReport")  # LoopReport: hltrun's extras
    for title, body in sections:
        rows = []
        for line in body:
            m = re.match(rf"^((?:{_NUM}\s+)+)(\S.*)$", line)
            if m:
                rows.append((tuple(float(v) for v in m.group(1).split()), m.group(2).strip()))
        if title.startswith(("Event Summary", "Event loop extras")):
            for line in body:
                m = re.match(rf"^(.*?)\s*=\s*({_NUM})$", line)
                if m:
                    doc["event"][m.group(1).strip()] = float(m.group(2))
        elif title.startswith("Path Summary"):
            doc["paths"].update({name: vals for vals, name in rows})
        elif title.startswith("End-Path Summary"):
            doc["endpaths"].update({name: vals for vals, name in rows})
        elif title.startswith("Modules in"):
            name = title.split(":", 1)[1].split("[")[0].strip()
            doc["modules_in_path"][name] = {label: vals for vals, label in rows}
        elif title.startswith("Module Summary"):
            key = "modules_cpu" if "CPU" in title else "modules_real"
            doc[key].update({label: vals for vals, label in rows})
    return doc


# ---------------------------------------------------------------------- HTML
class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(page: str) -> list[dict[str, Any]]:
    """Every <table>: {'header': [...], 'rows': [[...], ...]} with cell text unescaped."""
    p = _Tables()
    p.feed(page)
    return [{"header": t[0], "rows": t[1:]} for t in p.tables if t]


def html_table(page: str, first_header: str) -> dict[str, Any]:
    """The table whose first header cell is ``first_header``."""
    for t in html_tables(page):
        if t["header"] and t["header"][0] == first_header:
            return t
    raise ValueError(f"no HTML table starting with header {first_header!r}")


def html_number(cell: str) -> float:
    """A number as the HTML report formats it (thousands separators, 'nan')."""
    return float(cell.replace(",", ""))


def html_pre(page: str) -> str:
    """The text report embedded in the page's <pre>."""
    import html

    m = re.search(r"<pre>(.*?)</pre>", page, re.S)
    if not m:
        raise ValueError("no <pre> text report in the page")
    return html.unescape(m.group(1))


# ---------------------------------------------------------------------- MemoryReport and the job report
def parse_memoryreport(text: str) -> dict[str, float]:
    """The peaks (MiB) the MemoryReport prints: SimpleMemoryCheck's ``Peak virtual size V Mbytes (RSS R)``
    and ``Peak rss size R Mbytes (VSIZE V)``, hltrun's ``peak virtual size V MiB, peak RSS R MiB`` and
    ``at the end R MiB``."""
    number = f"({_NUM})"
    patterns = {("peak_vsize", "peak_vsize_rss"): rf"MemoryReport> Peak virtual size {number} Mbytes \(RSS {number}\)",
                ("peak_rss", "peak_rss_vsize"): rf"MemoryReport> Peak rss size {number} Mbytes \(VSIZE {number}\)",
                ("summary_peak_vsize", "summary_peak_rss"):
                    rf"MemoryReport  peak virtual size {number} MiB, peak RSS {number} MiB",
                ("summary_rss_end",): rf"MemoryReport  RSS at start .* at the end {number} MiB"}
    out: dict[str, float] = {}
    for keys, pattern in patterns.items():
        m = re.search(pattern, text, re.M)
        if not m:
            raise ValueError(f"no MemoryReport line matching {pattern!r}")
        out.update(zip(keys, map(float, m.groups())))
    return out


def parse_jobreport(xml_text: str) -> dict[str, Any]:
    """FrameworkJobReport XML: {'metrics': {(metric, name): float}, 'inputs': {PFN: EventsRead},
    'outputs': {PFN: TotalEvents}}."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml_text)
    return {"metrics": {(s.get("Metric"), m.get("Name")): float(m.get("Value"))
                        for s in root.find("PerformanceReport") for m in s},
            "inputs": {i.findtext("PFN"): int(i.findtext("EventsRead")) for i in root.findall("InputFile")},
            "outputs": {f.findtext("PFN"): int(f.findtext("TotalEvents")) for f in root.findall("File")}}
