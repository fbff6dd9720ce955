"""The science of the paper: data, models, training, distillation, acquisition, schedules, probes and
the round loop. Imports nothing of altui."""
