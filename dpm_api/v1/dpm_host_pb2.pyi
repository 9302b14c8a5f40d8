from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_FIELD: _ClassVar[ErrorReason]
    ERROR_REASON_HOST_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_INSTANCE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_HMC_OBJECT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_CPC_NOT_USABLE: _ClassVar[ErrorReason]
    ERROR_REASON_STORAGE_PATH_UNSUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_PARTITION_STATE: _ClassVar[ErrorReason]
    ERROR_REASON_HOST_CAPACITY_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_MANY_NICS: _ClassVar[ErrorReason]
    ERROR_REASON_CMDLINE_TOO_LONG: _ClassVar[ErrorReason]
    ERROR_REASON_BOOT_VOLUME_UNUSABLE: _ClassVar[ErrorReason]
    ERROR_REASON_IMAGE_BOOT_UNSUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_VIF_UNSUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_HMC_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_HMC_TIMEOUT: _ClassVar[ErrorReason]
    ERROR_REASON_HMC_ERROR: _ClassVar[ErrorReason]
    ERROR_REASON_BACKEND_BUSY: _ClassVar[ErrorReason]
    ERROR_REASON_UNAUTHENTICATED: _ClassVar[ErrorReason]
    ERROR_REASON_PERMISSION_DENIED: _ClassVar[ErrorReason]
    ERROR_REASON_INSTANCE_BUSY: _ClassVar[ErrorReason]
    ERROR_REASON_PARTITION_NOT_STARTED: _ClassVar[ErrorReason]
    ERROR_REASON_HOST_NOT_READY: _ClassVar[ErrorReason]
    ERROR_REASON_PARTITION_RUNNING: _ClassVar[ErrorReason]
    ERROR_REASON_WATCHER_TOO_SLOW: _ClassVar[ErrorReason]
    ERROR_REASON_BACKEND_STANDBY: _ClassVar[ErrorReason]

class PowerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POWER_STATE_UNSPECIFIED: _ClassVar[PowerState]
    POWER_STATE_RUNNING: _ClassVar[PowerState]
    POWER_STATE_SHUTDOWN: _ClassVar[PowerState]
    POWER_STATE_CRASHED: _ClassVar[PowerState]

class StoragePath(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_PATH_UNSPECIFIED: _ClassVar[StoragePath]
    STORAGE_PATH_VHBA: _ClassVar[StoragePath]
    STORAGE_PATH_STORAGE_GROUPS: _ClassVar[StoragePath]

class WatchKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCH_KIND_UNSPECIFIED: _ClassVar[WatchKind]
    WATCH_KIND_CURRENT_STATE: _ClassVar[WatchKind]
    WATCH_KIND_CHANGE: _ClassVar[WatchKind]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_FIELD: ErrorReason
ERROR_REASON_HOST_NOT_FOUND: ErrorReason
ERROR_REASON_INSTANCE_NOT_FOUND: ErrorReason
ERROR_REASON_HMC_OBJECT_NOT_FOUND: ErrorReason
ERROR_REASON_CPC_NOT_USABLE: ErrorReason
ERROR_REASON_STORAGE_PATH_UNSUPPORTED: ErrorReason
ERROR_REASON_INVALID_PARTITION_STATE: ErrorReason
ERROR_REASON_HOST_CAPACITY_EXCEEDED: ErrorReason
ERROR_REASON_TOO_MANY_NICS: ErrorReason
ERROR_REASON_CMDLINE_TOO_LONG: ErrorReason
ERROR_REASON_BOOT_VOLUME_UNUSABLE: ErrorReason
ERROR_REASON_IMAGE_BOOT_UNSUPPORTED: ErrorReason
ERROR_REASON_VIF_UNSUPPORTED: ErrorReason
ERROR_REASON_HMC_UNAVAILABLE: ErrorReason
ERROR_REASON_HMC_TIMEOUT: ErrorReason
ERROR_REASON_HMC_ERROR: ErrorReason
ERROR_REASON_BACKEND_BUSY: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_INSTANCE_BUSY: ErrorReason
ERROR_REASON_PARTITION_NOT_STARTED: ErrorReason
ERROR_REASON_HOST_NOT_READY: ErrorReason
ERROR_REASON_PARTITION_RUNNING: ErrorReason
ERROR_REASON_WATCHER_TOO_SLOW: ErrorReason
ERROR_REASON_BACKEND_STANDBY: ErrorReason
POWER_STATE_UNSPECIFIED: PowerState
POWER_STATE_RUNNING: PowerState
POWER_STATE_SHUTDOWN: PowerState
POWER_STATE_CRASHED: PowerState
STORAGE_PATH_UNSPECIFIED: StoragePath
STORAGE_PATH_VHBA: StoragePath
STORAGE_PATH_STORAGE_GROUPS: StoragePath
WATCH_KIND_UNSPECIFIED: WatchKind
WATCH_KIND_CURRENT_STATE: WatchKind
WATCH_KIND_CHANGE: WatchKind

class Flavor(_message.Message):
    __slots__ = ("vcpus", "memory_mb")
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    vcpus: int
    memory_mb: int
    def __init__(self, vcpus: _Optional[int] = ..., memory_mb: _Optional[int] = ...) -> None: ...

class Nic(_message.Message):
    __slots__ = ("port_id", "mac", "vif_type", "vswitch_object_id", "vlan")
    PORT_ID_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    VIF_TYPE_FIELD_NUMBER: _ClassVar[int]
    VSWITCH_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VLAN_FIELD_NUMBER: _ClassVar[int]
    port_id: str
    mac: str
    vif_type: str
    vswitch_object_id: str
    vlan: int
    def __init__(self, port_id: _Optional[str] = ..., mac: _Optional[str] = ..., vif_type: _Optional[str] = ..., vswitch_object_id: _Optional[str] = ..., vlan: _Optional[int] = ...) -> None: ...

class InitiatorTargets(_message.Message):
    __slots__ = ("initiator_wwpn", "target_wwpns")
    INITIATOR_WWPN_FIELD_NUMBER: _ClassVar[int]
    TARGET_WWPNS_FIELD_NUMBER: _ClassVar[int]
    initiator_wwpn: str
    target_wwpns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, initiator_wwpn: _Optional[str] = ..., target_wwpns: _Optional[_Iterable[str]] = ...) -> None: ...

class FcBootVolume(_message.Message):
    __slots__ = ("target_lun", "initiator_target_map", "volume_id", "size_gib")
    TARGET_LUN_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_TARGET_MAP_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_GIB_FIELD_NUMBER: _ClassVar[int]
    target_lun: int
    initiator_target_map: _containers.RepeatedCompositeFieldContainer[InitiatorTargets]
    volume_id: str
    size_gib: int
    def __init__(self, target_lun: _Optional[int] = ..., initiator_target_map: _Optional[_Iterable[_Union[InitiatorTargets, _Mapping]]] = ..., volume_id: _Optional[str] = ..., size_gib: _Optional[int] = ...) -> None: ...

class InstanceInfo(_message.Message):
    __slots__ = ("instance_uuid", "power_state", "partition_status", "partition_name", "partition_object_id", "vcpus", "memory_mb")
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_STATUS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITION_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    power_state: PowerState
    partition_status: str
    partition_name: str
    partition_object_id: str
    vcpus: int
    memory_mb: int
    def __init__(self, instance_uuid: _Optional[str] = ..., power_state: _Optional[_Union[PowerState, str]] = ..., partition_status: _Optional[str] = ..., partition_name: _Optional[str] = ..., partition_object_id: _Optional[str] = ..., vcpus: _Optional[int] = ..., memory_mb: _Optional[int] = ...) -> None: ...

class HostStatus(_message.Message):
    __slots__ = ("host", "cpc_name", "cpc_object_id", "cpc_status", "hypervisor_type", "hypervisor_version", "cpu_arch", "storage_path", "vcpus_total", "vcpus_used", "memory_mb_total", "memory_mb_used", "instance_count")
    HOST_FIELD_NUMBER: _ClassVar[int]
    CPC_NAME_FIELD_NUMBER: _ClassVar[int]
    CPC_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CPC_STATUS_FIELD_NUMBER: _ClassVar[int]
    HYPERVISOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    HYPERVISOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_ARCH_FIELD_NUMBER: _ClassVar[int]
    STORAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    VCPUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VCPUS_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_USED_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    host: str
    cpc_name: str
    cpc_object_id: str
    cpc_status: str
    hypervisor_type: str
    hypervisor_version: int
    cpu_arch: str
    storage_path: StoragePath
    vcpus_total: int
    vcpus_used: int
    memory_mb_total: int
    memory_mb_used: int
    instance_count: int
    def __init__(self, host: _Optional[str] = ..., cpc_name: _Optional[str] = ..., cpc_object_id: _Optional[str] = ..., cpc_status: _Optional[str] = ..., hypervisor_type: _Optional[str] = ..., hypervisor_version: _Optional[int] = ..., cpu_arch: _Optional[str] = ..., storage_path: _Optional[_Union[StoragePath, str]] = ..., vcpus_total: _Optional[int] = ..., vcpus_used: _Optional[int] = ..., memory_mb_total: _Optional[int] = ..., memory_mb_used: _Optional[int] = ..., instance_count: _Optional[int] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostServing(_message.Message):
    __slots__ = ("host", "serving", "problem")
    HOST_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    host: str
    serving: bool
    problem: str
    def __init__(self, host: _Optional[str] = ..., serving: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[HostServing]
    def __init__(self, hosts: _Optional[_Iterable[_Union[HostServing, _Mapping]]] = ...) -> None: ...

class GetHostStatusRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class GetHostStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: HostStatus
    def __init__(self, status: _Optional[_Union[HostStatus, _Mapping]] = ...) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[InstanceInfo]
    def __init__(self, instances: _Optional[_Iterable[_Union[InstanceInfo, _Mapping]]] = ...) -> None: ...

class GetInstanceInfoRequest(_message.Message):
    __slots__ = ("host", "instance_uuid")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ...) -> None: ...

class GetInstanceInfoResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: InstanceInfo
    def __init__(self, info: _Optional[_Union[InstanceInfo, _Mapping]] = ...) -> None: ...

class PrepareInstanceRequest(_message.Message):
    __slots__ = ("host", "instance_uuid", "flavor")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    flavor: Flavor
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ..., flavor: _Optional[_Union[Flavor, _Mapping]] = ...) -> None: ...

class PrepareInstanceResponse(_message.Message):
    __slots__ = ("info", "wwpns")
    INFO_FIELD_NUMBER: _ClassVar[int]
    WWPNS_FIELD_NUMBER: _ClassVar[int]
    info: InstanceInfo
    wwpns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, info: _Optional[_Union[InstanceInfo, _Mapping]] = ..., wwpns: _Optional[_Iterable[str]] = ...) -> None: ...

class GetVolumeConnectorRequest(_message.Message):
    __slots__ = ("host", "instance_uuid")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ...) -> None: ...

class GetVolumeConnectorResponse(_message.Message):
    __slots__ = ("wwpns",)
    WWPNS_FIELD_NUMBER: _ClassVar[int]
    wwpns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, wwpns: _Optional[_Iterable[str]] = ...) -> None: ...

class SpawnRequest(_message.Message):
    __slots__ = ("host", "instance_uuid", "flavor", "nics", "boot_volume", "leave_stopped", "data_volumes", "stop_other_hosts_partitions")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    NICS_FIELD_NUMBER: _ClassVar[int]
    BOOT_VOLUME_FIELD_NUMBER: _ClassVar[int]
    LEAVE_STOPPED_FIELD_NUMBER: _ClassVar[int]
    DATA_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    STOP_OTHER_HOSTS_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    flavor: Flavor
    nics: _containers.RepeatedCompositeFieldContainer[Nic]
    boot_volume: FcBootVolume
    leave_stopped: bool
    data_volumes: _containers.RepeatedCompositeFieldContainer[FcBootVolume]
    stop_other_hosts_partitions: bool
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ..., flavor: _Optional[_Union[Flavor, _Mapping]] = ..., nics: _Optional[_Iterable[_Union[Nic, _Mapping]]] = ..., boot_volume: _Optional[_Union[FcBootVolume, _Mapping]] = ..., leave_stopped: _Optional[bool] = ..., data_volumes: _Optional[_Iterable[_Union[FcBootVolume, _Mapping]]] = ..., stop_other_hosts_partitions: _Optional[bool] = ...) -> None: ...

class SpawnResponse(_message.Message):
    __slots__ = ("info", "boot_os_specific_parameters")
    INFO_FIELD_NUMBER: _ClassVar[int]
    BOOT_OS_SPECIFIC_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    info: InstanceInfo
    boot_os_specific_parameters: str
    def __init__(self, info: _Optional[_Union[InstanceInfo, _Mapping]] = ..., boot_os_specific_parameters: _Optional[str] = ...) -> None: ...

class DestroyRequest(_message.Message):
    __slots__ = ("host", "instance_uuid", "wwpns_known")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    WWPNS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    wwpns_known: bool
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ..., wwpns_known: _Optional[bool] = ...) -> None: ...

class DestroyResponse(_message.Message):
    __slots__ = ("existed", "wwpns")
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    WWPNS_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    wwpns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, existed: _Optional[bool] = ..., wwpns: _Optional[_Iterable[str]] = ...) -> None: ...

class PowerOffRequest(_message.Message):
    __slots__ = ("host", "instance_uuid")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ...) -> None: ...

class PowerOffResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: InstanceInfo
    def __init__(self, info: _Optional[_Union[InstanceInfo, _Mapping]] = ...) -> None: ...

class PowerOnRequest(_message.Message):
    __slots__ = ("host", "instance_uuid")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ...) -> None: ...

class PowerOnResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: InstanceInfo
    def __init__(self, info: _Optional[_Union[InstanceInfo, _Mapping]] = ...) -> None: ...

class RebootRequest(_message.Message):
    __slots__ = ("host", "instance_uuid")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ...) -> None: ...

class RebootResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: InstanceInfo
    def __init__(self, info: _Optional[_Union[InstanceInfo, _Mapping]] = ...) -> None: ...

class AttachVolumeRequest(_message.Message):
    __slots__ = ("host", "instance_uuid", "volume")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    volume: FcBootVolume
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ..., volume: _Optional[_Union[FcBootVolume, _Mapping]] = ...) -> None: ...

class AttachVolumeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DetachVolumeRequest(_message.Message):
    __slots__ = ("host", "instance_uuid", "volume_id")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    host: str
    instance_uuid: str
    volume_id: str
    def __init__(self, host: _Optional[str] = ..., instance_uuid: _Optional[str] = ..., volume_id: _Optional[str] = ...) -> None: ...

class DetachVolumeResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class WatchInstancesRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class InstanceState(_message.Message):
    __slots__ = ("instance_uuid", "power_state", "partition_status", "removed")
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_STATUS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    power_state: PowerState
    partition_status: str
    removed: bool
    def __init__(self, instance_uuid: _Optional[str] = ..., power_state: _Optional[_Union[PowerState, str]] = ..., partition_status: _Optional[str] = ..., removed: _Optional[bool] = ...) -> None: ...

class WatchInstancesResponse(_message.Message):
    __slots__ = ("kind", "sequence", "epoch", "instances", "notifications")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    kind: WatchKind
    sequence: int
    epoch: str
    instances: _containers.RepeatedCompositeFieldContainer[InstanceState]
    notifications: bool
    def __init__(self, kind: _Optional[_Union[WatchKind, str]] = ..., sequence: _Optional[int] = ..., epoch: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[InstanceState, _Mapping]]] = ..., notifications: _Optional[bool] = ...) -> None: ...
