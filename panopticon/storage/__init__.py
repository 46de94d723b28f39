"""The one door to the search engine (Elasticsearch or OpenSearch). Nothing else imports their clients."""

from panopticon.storage.engines import EngineInfo, import_clients
from panopticon.storage.store import BulkItem, SearchStore, iter_hits, open_store
from panopticon.storage.templates import ALERTS, EDGES, ERROR_GROUPS, ERRORS, LOGS, METRICS, STATE, TRACES

__all__ = ["ALERTS", "BulkItem", "EDGES", "ERRORS", "ERROR_GROUPS", "EngineInfo", "LOGS", "METRICS", "STATE",
           "SearchStore", "TRACES", "import_clients", "iter_hits", "open_store"]
