"""The platform's contract: messages, names, service topics and their JSON Schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.platform.candle_decode import decode_candles as decode_candles
    from streamforge_nb.platform.checks import ERA_START_MS as ERA_START_MS
    from streamforge_nb.platform.checks import check_candles as check_candles
    from streamforge_nb.platform.checks import decode_and_check as decode_and_check
    from streamforge_nb.platform.contract import COMMANDS as COMMANDS
    from streamforge_nb.platform.contract import MAX_COUNT as MAX_COUNT
    from streamforge_nb.platform.contract import MAX_ID_CHARS as MAX_ID_CHARS
    from streamforge_nb.platform.contract import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS
    from streamforge_nb.platform.contract import MAX_TIMESTAMP as MAX_TIMESTAMP
    from streamforge_nb.platform.contract import MIN_TIMESTAMP as MIN_TIMESTAMP
    from streamforge_nb.platform.contract import STATUSES as STATUSES
    from streamforge_nb.platform.contract import TERMINAL_STATUSES as TERMINAL_STATUSES
    from streamforge_nb.platform.contract import BaseCommand as BaseCommand
    from streamforge_nb.platform.contract import BaseEvent as BaseEvent
    from streamforge_nb.platform.contract import Candle as Candle
    from streamforge_nb.platform.contract import Command as Command
    from streamforge_nb.platform.contract import Error as Error
    from streamforge_nb.platform.contract import Event as Event
    from streamforge_nb.platform.contract import Finished as Finished
    from streamforge_nb.platform.contract import Interrupted as Interrupted
    from streamforge_nb.platform.contract import Loading as Loading
    from streamforge_nb.platform.contract import Message as Message
    from streamforge_nb.platform.contract import PingCommand as PingCommand
    from streamforge_nb.platform.contract import Pong as Pong
    from streamforge_nb.platform.contract import StartCommand as StartCommand
    from streamforge_nb.platform.contract import Started as Started
    from streamforge_nb.platform.contract import StopCommand as StopCommand
    from streamforge_nb.platform.contract import clip_message as clip_message
    from streamforge_nb.platform.contract import decode_candle as decode_candle
    from streamforge_nb.platform.contract import decode_command as decode_command
    from streamforge_nb.platform.contract import decode_event as decode_event
    from streamforge_nb.platform.contract import encode as encode
    from streamforge_nb.platform.contract import message_key as message_key
    from streamforge_nb.platform.intervals import DAY_MS as DAY_MS
    from streamforge_nb.platform.intervals import INTERVALS as INTERVALS
    from streamforge_nb.platform.intervals import WEEK_OFFSET_MS as WEEK_OFFSET_MS
    from streamforge_nb.platform.intervals import check_interval as check_interval
    from streamforge_nb.platform.intervals import close_time as close_time
    from streamforge_nb.platform.intervals import interval_ms as interval_ms
    from streamforge_nb.platform.intervals import longest_ms as longest_ms
    from streamforge_nb.platform.intervals import open_times as open_times
    from streamforge_nb.platform.markers import EXCHANGE_EMPTY as EXCHANGE_EMPTY
    from streamforge_nb.platform.markers import RECORD_HEADER as RECORD_HEADER
    from streamforge_nb.platform.markers import decode_exchange_empty as decode_exchange_empty
    from streamforge_nb.platform.markers import encode_exchange_empty as encode_exchange_empty
    from streamforge_nb.platform.markers import is_marker as is_marker
    from streamforge_nb.platform.markers import marker_key as marker_key
    from streamforge_nb.platform.names import DIGIT_SYMBOL_PREFIX as DIGIT_SYMBOL_PREFIX
    from streamforge_nb.platform.names import QueueIdParts as QueueIdParts
    from streamforge_nb.platform.names import candle_type as candle_type
    from streamforge_nb.platform.names import check_collection_name as check_collection_name
    from streamforge_nb.platform.names import check_dns1123_label as check_dns1123_label
    from streamforge_nb.platform.names import check_kafka_topic as check_kafka_topic
    from streamforge_nb.platform.names import check_label_value as check_label_value
    from streamforge_nb.platform.names import check_queue_id as check_queue_id
    from streamforge_nb.platform.names import check_short_id as check_short_id
    from streamforge_nb.platform.names import check_symbol as check_symbol
    from streamforge_nb.platform.names import check_target as check_target
    from streamforge_nb.platform.names import check_type as check_type
    from streamforge_nb.platform.names import collection_name as collection_name
    from streamforge_nb.platform.names import data_topic as data_topic
    from streamforge_nb.platform.names import dlq_topic as dlq_topic
    from streamforge_nb.platform.names import job_name as job_name
    from streamforge_nb.platform.names import new_short_id as new_short_id
    from streamforge_nb.platform.names import parse_collection_name as parse_collection_name
    from streamforge_nb.platform.names import parse_queue_id as parse_queue_id
    from streamforge_nb.platform.names import producer_id as producer_id
    from streamforge_nb.platform.names import queue_id as queue_id
    from streamforge_nb.platform.schemas import json_schemas as json_schemas
    from streamforge_nb.platform.schemas import main as main
    from streamforge_nb.platform.schemas import render_schema as render_schema
    from streamforge_nb.platform.schemas import schemas_dir as schemas_dir
    from streamforge_nb.platform.schemas import write_schemas as write_schemas
    from streamforge_nb.platform.time_range import TimeRange as TimeRange
    from streamforge_nb.platform.time_range import parse_time_range as parse_time_range
    from streamforge_nb.platform.topics import PLATFORM_ACLS as PLATFORM_ACLS
    from streamforge_nb.platform.topics import PLATFORM_USER as PLATFORM_USER
    from streamforge_nb.platform.topics import SERVICE_TOPICS as SERVICE_TOPICS
    from streamforge_nb.platform.topics import STRIMZI_API_VERSIONS as STRIMZI_API_VERSIONS
    from streamforge_nb.platform.topics import VIEWER_ACLS as VIEWER_ACLS
    from streamforge_nb.platform.topics import VIEWER_USER as VIEWER_USER
    from streamforge_nb.platform.topics import AclRule as AclRule
    from streamforge_nb.platform.topics import TopicSpec as TopicSpec
    from streamforge_nb.platform.topics import broker_count as broker_count
    from streamforge_nb.platform.topics import data_topic_spec as data_topic_spec
    from streamforge_nb.platform.topics import ensure_acls as ensure_acls
    from streamforge_nb.platform.topics import ensure_queue_topics as ensure_queue_topics
    from streamforge_nb.platform.topics import ensure_topics as ensure_topics
    from streamforge_nb.platform.topics import strimzi_manifests as strimzi_manifests

_EXPORTS = {
    "AclRule": "streamforge_nb.platform.topics",
    "BaseCommand": "streamforge_nb.platform.contract",
    "BaseEvent": "streamforge_nb.platform.contract",
    "COMMANDS": "streamforge_nb.platform.contract",
    "Candle": "streamforge_nb.platform.contract",
    "Command": "streamforge_nb.platform.contract",
    "DAY_MS": "streamforge_nb.platform.intervals",
    "DIGIT_SYMBOL_PREFIX": "streamforge_nb.platform.names",
    "ERA_START_MS": "streamforge_nb.platform.checks",
    "EXCHANGE_EMPTY": "streamforge_nb.platform.markers",
    "Error": "streamforge_nb.platform.contract",
    "Event": "streamforge_nb.platform.contract",
    "Finished": "streamforge_nb.platform.contract",
    "INTERVALS": "streamforge_nb.platform.intervals",
    "Interrupted": "streamforge_nb.platform.contract",
    "Loading": "streamforge_nb.platform.contract",
    "MAX_COUNT": "streamforge_nb.platform.contract",
    "MAX_ID_CHARS": "streamforge_nb.platform.contract",
    "MAX_MESSAGE_CHARS": "streamforge_nb.platform.contract",
    "MAX_TIMESTAMP": "streamforge_nb.platform.contract",
    "MIN_TIMESTAMP": "streamforge_nb.platform.contract",
    "Message": "streamforge_nb.platform.contract",
    "PLATFORM_ACLS": "streamforge_nb.platform.topics",
    "PLATFORM_USER": "streamforge_nb.platform.topics",
    "PingCommand": "streamforge_nb.platform.contract",
    "Pong": "streamforge_nb.platform.contract",
    "QueueIdParts": "streamforge_nb.platform.names",
    "RECORD_HEADER": "streamforge_nb.platform.markers",
    "SERVICE_TOPICS": "streamforge_nb.platform.topics",
    "STATUSES": "streamforge_nb.platform.contract",
    "STRIMZI_API_VERSIONS": "streamforge_nb.platform.topics",
    "StartCommand": "streamforge_nb.platform.contract",
    "Started": "streamforge_nb.platform.contract",
    "StopCommand": "streamforge_nb.platform.contract",
    "TERMINAL_STATUSES": "streamforge_nb.platform.contract",
    "TimeRange": "streamforge_nb.platform.time_range",
    "TopicSpec": "streamforge_nb.platform.topics",
    "VIEWER_ACLS": "streamforge_nb.platform.topics",
    "VIEWER_USER": "streamforge_nb.platform.topics",
    "WEEK_OFFSET_MS": "streamforge_nb.platform.intervals",
    "candle_type": "streamforge_nb.platform.names",
    "check_candles": "streamforge_nb.platform.checks",
    "check_collection_name": "streamforge_nb.platform.names",
    "check_dns1123_label": "streamforge_nb.platform.names",
    "check_interval": "streamforge_nb.platform.intervals",
    "check_kafka_topic": "streamforge_nb.platform.names",
    "check_label_value": "streamforge_nb.platform.names",
    "check_queue_id": "streamforge_nb.platform.names",
    "check_short_id": "streamforge_nb.platform.names",
    "check_symbol": "streamforge_nb.platform.names",
    "check_target": "streamforge_nb.platform.names",
    "check_type": "streamforge_nb.platform.names",
    "clip_message": "streamforge_nb.platform.contract",
    "close_time": "streamforge_nb.platform.intervals",
    "collection_name": "streamforge_nb.platform.names",
    "data_topic": "streamforge_nb.platform.names",
    "decode_and_check": "streamforge_nb.platform.checks",
    "decode_candle": "streamforge_nb.platform.contract",
    "decode_candles": "streamforge_nb.platform.candle_decode",
    "decode_command": "streamforge_nb.platform.contract",
    "decode_event": "streamforge_nb.platform.contract",
    "decode_exchange_empty": "streamforge_nb.platform.markers",
    "dlq_topic": "streamforge_nb.platform.names",
    "encode": "streamforge_nb.platform.contract",
    "encode_exchange_empty": "streamforge_nb.platform.markers",
    "ensure_acls": "streamforge_nb.platform.topics",
    "broker_count": "streamforge_nb.platform.topics",
    "data_topic_spec": "streamforge_nb.platform.topics",
    "ensure_queue_topics": "streamforge_nb.platform.topics",
    "ensure_topics": "streamforge_nb.platform.topics",
    "interval_ms": "streamforge_nb.platform.intervals",
    "is_marker": "streamforge_nb.platform.markers",
    "job_name": "streamforge_nb.platform.names",
    "json_schemas": "streamforge_nb.platform.schemas",
    "longest_ms": "streamforge_nb.platform.intervals",
    "main": "streamforge_nb.platform.schemas",
    "marker_key": "streamforge_nb.platform.markers",
    "message_key": "streamforge_nb.platform.contract",
    "new_short_id": "streamforge_nb.platform.names",
    "open_times": "streamforge_nb.platform.intervals",
    "parse_collection_name": "streamforge_nb.platform.names",
    "parse_queue_id": "streamforge_nb.platform.names",
    "parse_time_range": "streamforge_nb.platform.time_range",
    "producer_id": "streamforge_nb.platform.names",
    "queue_id": "streamforge_nb.platform.names",
    "render_schema": "streamforge_nb.platform.schemas",
    "schemas_dir": "streamforge_nb.platform.schemas",
    "strimzi_manifests": "streamforge_nb.platform.topics",
    "write_schemas": "streamforge_nb.platform.schemas",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
