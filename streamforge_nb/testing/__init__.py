"""What tests may use (ours and users' own) and production never imports: a real
local broker, a local exchange and archive packing, a real kube-apiserver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.testing.archives import (
        write_archive,
    )
    from streamforge_nb.testing.broker import (
        local_broker,
        read_topic,
        round_trips,
        topic_exists,
        unique_name,
    )
    from streamforge_nb.testing.candles import (
        DEFAULT_SEED,
        CandleGenerator,
    )
    from streamforge_nb.testing.exchange import (
        DROP,
        LISTED_MS,
        ExchangeServer,
        RequestRecord,
    )
    from streamforge_nb.testing.kube import (
        KubeBinaries,
        KubeTestError,
        find_kube_binaries,
        kube_cache_dir,
        local_apiserver,
    )
    from streamforge_nb.testing.kube_api import (
        LocalApiServer,
    )

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

__all__ = [
    "DEFAULT_SEED",
    "DROP",
    "LISTED_MS",
    "CandleGenerator",
    "ExchangeServer",
    "KubeBinaries",
    "KubeTestError",
    "LocalApiServer",
    "RequestRecord",
    "find_kube_binaries",
    "kube_cache_dir",
    "local_apiserver",
    "local_broker",
    "read_topic",
    "round_trips",
    "topic_exists",
    "unique_name",
    "write_archive",
]

