"""DPMHost API v1, generated from protos/dpm_api/v1/*.proto by grpc_tools.protoc."""
