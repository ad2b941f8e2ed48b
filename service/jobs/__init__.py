"""Fine-tuning jobs: state machine, naming, persistence and the scheduler that runs trainers."""
