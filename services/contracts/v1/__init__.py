"""Generated gRPC/protobuf code for the facegate.v1 contracts (make proto). Do not edit."""
