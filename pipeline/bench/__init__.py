"""`invoke bench`: the appliance's speed and memory, measured and written to artifacts/bench/."""
