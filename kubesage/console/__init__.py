"""The web console (``kubesage ui``): runs, a run's graph, timeline, logs, metrics and artifacts,
compare, lineage, the catalog and the per-client view, over the same run store interface the
command line reads. FastAPI serves pages rendered on the server (Jinja2); htmx's SSE extension
swaps in what changes; Graphviz lays the graphs out; uPlot draws the curves (``static/vendor``).
"""
