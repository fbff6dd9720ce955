"""The Slurm executor: one Slurm job per run, submitted through submitit; it may import the rest of
altui.execution, altui.store and altui.files.

The head (head.py: `SlurmWorker`, on the login node) claims a queued run and `SlurmJobs.submit`
(jobs.py) hands submitit a `SlurmRun` (job.py) for it: submitit pickles it into `<run folder>/slurm/`,
writes the sbatch script and submits it. On the compute node, submitit unpickles it and calls it: the
run goes through `runner.execute_to_events`, which appends to the run's events file and never opens
the store. `SlurmJobs` also asks Slurm which jobs live (squeue), how one ended (scontrol, else sacct)
and cancels them (scancel). options.py holds the options, runs one Slurm command (`slurm()`) and
checks the options before a worker starts (`check_slurm`). Options and behaviour: docs/worker.md.
"""

from altui.execution.executors.slurm.job import SlurmRun

# Jobs submitted before the executor became a package pickled `altui.execution.executors.slurm.SlurmRun`:
# a requeued one (preemption, `scontrol requeue`) unpickles it again on its node.
__all__ = ["SlurmRun"]
