"""Generated gRPC/protobuf code for facegate.v1 (make proto). Do not edit."""
