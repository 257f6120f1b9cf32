"""What tests may use (ours and users' own) and production never imports: a real
local broker, a local exchange and archive packing, a real kube-apiserver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.testing.archives import write_archive as write_archive
    from streamforge_nb.testing.broker import local_broker as local_broker
    from streamforge_nb.testing.broker import read_topic as read_topic
    from streamforge_nb.testing.broker import round_trips as round_trips
    from streamforge_nb.testing.broker import topic_exists as topic_exists
    from streamforge_nb.testing.broker import unique_name as unique_name
    from streamforge_nb.testing.candles import DEFAULT_SEED as DEFAULT_SEED
    from streamforge_nb.testing.candles import CandleGenerator as CandleGenerator
    from streamforge_nb.testing.exchange import DROP as DROP
    from streamforge_nb.testing.exchange import LISTED_MS as LISTED_MS
    from streamforge_nb.testing.exchange import ExchangeServer as ExchangeServer
    from streamforge_nb.testing.exchange import RequestRecord as RequestRecord
    from streamforge_nb.testing.kube import KubeBinaries as KubeBinaries
    from streamforge_nb.testing.kube import KubeTestError as KubeTestError
    from streamforge_nb.testing.kube import find_kube_binaries as find_kube_binaries
    from streamforge_nb.testing.kube import kube_cache_dir as kube_cache_dir
    from streamforge_nb.testing.kube import local_apiserver as local_apiserver
    from streamforge_nb.testing.kube_api import LocalApiServer as LocalApiServer

_EXPORTS = {
    "CandleGenerator": "streamforge_nb.testing.candles",
    "DEFAULT_SEED": "streamforge_nb.testing.candles",
    "DROP": "streamforge_nb.testing.exchange",
    "ExchangeServer": "streamforge_nb.testing.exchange",
    "KubeBinaries": "streamforge_nb.testing.kube",
    "KubeTestError": "streamforge_nb.testing.kube",
    "LISTED_MS": "streamforge_nb.testing.exchange",
    "LocalApiServer": "streamforge_nb.testing.kube_api",
    "RequestRecord": "streamforge_nb.testing.exchange",
    "find_kube_binaries": "streamforge_nb.testing.kube",
    "kube_cache_dir": "streamforge_nb.testing.kube",
    "local_apiserver": "streamforge_nb.testing.kube",
    "local_broker": "streamforge_nb.testing.broker",
    "read_topic": "streamforge_nb.testing.broker",
    "round_trips": "streamforge_nb.testing.broker",
    "topic_exists": "streamforge_nb.testing.broker",
    "unique_name": "streamforge_nb.testing.broker",
    "write_archive": "streamforge_nb.testing.archives",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]

