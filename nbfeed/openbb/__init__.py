"""What OpenBB Workspace speaks: ``widgets.json`` rules, table shaping, published entries.

No Jupyter and no hub: the server extension (:mod:`nbfeed.server_ext.workspace`) and the
notebook side (:mod:`nbfeed.client.publish`, the LiveGrid's ``columnsDefs``) both import it.

- :mod:`.schema` - what Workspace accepts in widgets.json and apps.json, as a validator;
- :mod:`.tables` - DataFrames and lists of dicts as ``columnsDefs`` and rows;
- :mod:`.entries` - a notebook's table definition as a checked widgets.json entry.
"""
