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
    from streamforge_nb.testing.cluster import LocalApiServer as LocalApiServer
    from streamforge_nb.testing.cluster import LocalNode as LocalNode
    from streamforge_nb.testing.cluster import find_kube_binaries as find_kube_binaries
    from streamforge_nb.testing.cluster import local_apiserver as local_apiserver
    from streamforge_nb.testing.cluster import local_node as local_node
    from streamforge_nb.testing.cluster import node_unavailable as node_unavailable
    from streamforge_nb.testing.exchange import DROP as DROP
    from streamforge_nb.testing.exchange import LISTED_MS as LISTED_MS
    from streamforge_nb.testing.exchange import ExchangeServer as ExchangeServer
    from streamforge_nb.testing.exchange import RequestRecord as RequestRecord
    from streamforge_nb.testing.image import BASE_REF as BASE_REF
    from streamforge_nb.testing.image import IMAGE_REPOSITORY as IMAGE_REPOSITORY
    from streamforge_nb.testing.image import BuiltImage as BuiltImage
    from streamforge_nb.testing.image import build_image as build_image
    from streamforge_nb.testing.image import image_cache_dir as image_cache_dir
    from streamforge_nb.testing.image import podman as podman

_EXPORTS = {
    "BASE_REF": "streamforge_nb.testing.image",
    "BuiltImage": "streamforge_nb.testing.image",
    "CandleGenerator": "streamforge_nb.testing.candles",
    "DEFAULT_SEED": "streamforge_nb.testing.candles",
    "DROP": "streamforge_nb.testing.exchange",
    "ExchangeServer": "streamforge_nb.testing.exchange",
    "IMAGE_REPOSITORY": "streamforge_nb.testing.image",
    "LISTED_MS": "streamforge_nb.testing.exchange",
    "LocalApiServer": "streamforge_nb.testing.cluster",
    "LocalNode": "streamforge_nb.testing.cluster",
    "RequestRecord": "streamforge_nb.testing.exchange",
    "build_image": "streamforge_nb.testing.image",
    "find_kube_binaries": "streamforge_nb.testing.cluster",
    "image_cache_dir": "streamforge_nb.testing.image",
    "local_apiserver": "streamforge_nb.testing.cluster",
    "local_broker": "streamforge_nb.testing.broker",
    "local_node": "streamforge_nb.testing.cluster",
    "node_unavailable": "streamforge_nb.testing.cluster",
    "podman": "streamforge_nb.testing.image",
    "read_topic": "streamforge_nb.testing.broker",
    "round_trips": "streamforge_nb.testing.broker",
    "topic_exists": "streamforge_nb.testing.broker",
    "unique_name": "streamforge_nb.testing.broker",
    "write_archive": "streamforge_nb.testing.archives",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
