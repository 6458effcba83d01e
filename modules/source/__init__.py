"""The ROOT jet source's parts; ``modules/root_source.py`` is the Source itself and imports them.

One job per file, like uproot's and CMSSW's PoolSource's split between the input sequence, the file and
the tree: ``parameters`` (what a user configures), ``tree`` (opening a file's tree, reading columns),
``hints`` (what a wrong file is and what to set), ``layout`` (a collection's branches agree),
``file_list`` (``source.files`` entries to file names: globs, file lists), ``event_ids`` (run, lumi and
event numbers; the lumis read), ``chunk`` (a chunk's arrays and the events'
views), ``conversion`` (a layout's branches into a chunk), ``checks`` (every file checked at begin_job),
``reading`` (the loop's reads: decompression pools, read-ahead and their CPU), ``open_files`` (a Dask
worker's files kept open between its work units).
"""
