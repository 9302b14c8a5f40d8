"""DPMHost API v1: stubs generated from protos/dpm_api/v1/*.proto by grpc_tools.protoc,
and contract.py, the values the proto states only in comments (hand-written).
"""
