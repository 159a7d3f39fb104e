"""The facegate.v1 contracts, generated from protos/ (make proto): the floor every service and client stands on."""
