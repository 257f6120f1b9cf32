"""Workers: processes that run a queue's step and talk to the platform through `Worker`."""
