"""The store's schema, a public interface (docs/schema.md): its migrations in order, which
`Migrations` applies to an older store, and the run statuses that the runs table allows."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

STATUSES = ("queued", "running", "done", "failed", "cancelled")

migrations = Migrations("altui")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            file TEXT,
            spec_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            name TEXT NOT NULL UNIQUE,
            method TEXT NOT NULL,
            seed INTEGER NOT NULL,
            sweep_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            device TEXT,
            pid INTEGER,
            attempt INTEGER NOT NULL DEFAULT 0,
            heartbeat_at TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            error TEXT,
            spec_json TEXT NOT NULL
        );
        CREATE INDEX runs_status ON runs(status, id);
        CREATE TABLE rounds (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            n_labeled INTEGER NOT NULL,
            accuracy REAL NOT NULL,
            test_loss REAL NOT NULL,
            weight_decay REAL NOT NULL,
            lr REAL NOT NULL,
            effective_channels INTEGER NOT NULL,
            total_channels INTEGER NOT NULL,
            conv_l2 REAL NOT NULL,
            train_seconds REAL NOT NULL,
            acquire_seconds REAL NOT NULL,
            pick_mean_score REAL,
            pick_class_counts TEXT NOT NULL,
            gamma_bins TEXT NOT NULL,
            gamma_counts TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (run_id, round)
        );
        CREATE TABLE epochs (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            train_loss REAL NOT NULL,
            train_accuracy REAL NOT NULL,
            lr REAL NOT NULL,
            images_per_second REAL NOT NULL,
            PRIMARY KEY (run_id, round, epoch)
        );
        CREATE TABLE channels (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            layer TEXT NOT NULL,
            channels INTEGER NOT NULL,
            effective INTEGER NOT NULL,
            PRIMARY KEY (run_id, round, layer)
        );
        CREATE TABLE picks (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            pool_index INTEGER NOT NULL,
            score REAL NOT NULL,
            PRIMARY KEY (run_id, round, pool_index)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs(id),
            at TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX events_run ON events(run_id, id);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


@migrations()
def m002_slurm(db: Database) -> None:
    """Runs that the Slurm executor runs carry their job id and the node it runs on."""
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN slurm_job_id TEXT;
        ALTER TABLE runs ADD COLUMN node TEXT;
        """
    )


@migrations()
def m003_gammas(db: Database) -> None:
    """Every batch-norm layer's |gamma| per round, so that any threshold or histogram (Figure 5)
    can be recomputed."""
    db.executescript(
        """
        CREATE TABLE gammas (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            layer TEXT NOT NULL,
            abs_gamma TEXT NOT NULL,
            PRIMARY KEY (run_id, round, layer)
        );
        """
    )


@migrations()
def m004_throughput(db: Database) -> None:
    """Short measurements of this machine's speed per device and workload (`altui estimate`)."""
    db.executescript(
        """
        CREATE TABLE throughput (
            device TEXT NOT NULL,
            model TEXT NOT NULL,
            input TEXT NOT NULL,
            batch INTEGER NOT NULL,
            compile INTEGER NOT NULL,
            augment INTEGER NOT NULL,
            slots INTEGER NOT NULL,
            kind TEXT NOT NULL,
            value REAL NOT NULL,
            torch_version TEXT NOT NULL,
            measured_at TEXT NOT NULL,
            PRIMARY KEY (device, model, input, batch, compile, augment, slots, kind)
        );
        """
    )


@migrations()
def m005_test_correct(db: Database) -> None:
    """Which test images each round's model got right (a bitset), so that the claims' verdicts can
    include the test set's own sampling error. NULL in rounds recorded before this migration. And
    indexes from an experiment's name to its runs: the results of one experiment (report, claims) are
    then read without scanning every round of the store."""
    db.executescript(
        """
        ALTER TABLE rounds ADD COLUMN test_images INTEGER;
        ALTER TABLE rounds ADD COLUMN test_correct TEXT;
        CREATE INDEX experiments_name ON experiments(name);
        CREATE INDEX runs_experiment ON runs(experiment_id, id);
        """
    )


@migrations()
def m006_slurm_reason(db: Database) -> None:
    """Why a Slurm job's run waits: Slurm's pending reason (Resources, Priority, ReqNodeNotAvail, ...)
    while its job is pending; NULL otherwise."""
    db.executescript("ALTER TABLE runs ADD COLUMN slurm_reason TEXT;")


RUN_FOLDERS_MIGRATION = "m007_run_folders"


@migrations()
def m007_run_folders(db: Database) -> None:
    """Run folders move from `<store folder>/<run id>/` to `<store file>-runs/<run id>/`: two stores in
    one folder shared them (and resumed from each other's checkpoints). The tables do not change; the
    folders are moved by the store as it applies this (StoreBase._move_run_folders)."""


@migrations()
def m008_teacher_provenance(db: Database) -> None:
    """Why distillation helps or hurts, and what can change a run's numbers (issue 22): the teacher
    diagnostics of every round t >= 1 (`teacher`), each epoch's mean CE and alpha * T^2 * KL term, and
    each run's provenance (torch and CUDA versions, device, threads, deterministic flags, compile,
    altui version). NULL in rows recorded before this migration."""
    db.executescript(
        """
        CREATE TABLE teacher (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            temperature REAL NOT NULL,
            teacher_test_accuracy REAL NOT NULL,
            teacher_prev_accuracy REAL NOT NULL,
            teacher_labeled_accuracy REAL NOT NULL,
            teacher_picks_accuracy REAL NOT NULL,
            teacher_picks_confidence REAL NOT NULL,
            student_prev_fit REAL NOT NULL,
            student_picks_fit REAL NOT NULL,
            PRIMARY KEY (run_id, round)
        );
        ALTER TABLE epochs ADD COLUMN train_ce REAL;
        ALTER TABLE epochs ADD COLUMN train_kd REAL;
        ALTER TABLE runs ADD COLUMN torch_version TEXT;
        ALTER TABLE runs ADD COLUMN cuda_version TEXT;
        ALTER TABLE runs ADD COLUMN device_name TEXT;
        ALTER TABLE runs ADD COLUMN threads INTEGER;
        ALTER TABLE runs ADD COLUMN deterministic TEXT;
        ALTER TABLE runs ADD COLUMN compiled INTEGER;
        ALTER TABLE runs ADD COLUMN altui_version TEXT;
        """
    )
