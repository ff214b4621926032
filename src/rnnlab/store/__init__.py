"""Where rnnlab keeps every result: Parquet files in a folder, queried with DuckDB, no server.

>>> from rnnlab.store import open_store, config_hash
>>> store = open_store("results/store")
>>> store.write("curves", config_hash(cfg), df, meta={"experiment": "capacity"})
>>> store.query("SELECT cell, avg(loss) FROM curves GROUP BY cell")
>>> rnnlab.store.load("curves")            # the whole table as a pandas DataFrame

See :mod:`rnnlab.store.parquet_store` for the layout and why it is files, not a database file.
"""
from ..errors import DamagedFileError, StoreError, StoreWarning
from .hashing import canonical, canonical_json, config_hash
from .parquet_store import DEFAULT_ROOT, Store, load, open_store, view_name

__all__ = ["DEFAULT_ROOT", "DamagedFileError", "Store", "StoreError", "StoreWarning", "canonical", "canonical_json", "config_hash",
           "load", "open_store", "view_name"]
