"""The training loop and everything only training uses: state and checkpoints of a run, data streams, optimisation, distributed set-up, resume rules, warm start, periodic evaluation."""
