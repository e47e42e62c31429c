-- Executors: where a job runs (the local runner's forked children, or Slurm), the scheduler's id
-- for it, the GPUs it asked for and was given, its data-parallel processes, and per-call
-- resource overrides (partition, time, GPUs, extra sbatch arguments) as JSON.

ALTER TABLE jobs ADD COLUMN executor TEXT NOT NULL DEFAULT 'local';
ALTER TABLE jobs ADD COLUMN external_id TEXT;
ALTER TABLE jobs ADD COLUMN gpus_needed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN gpus TEXT;
ALTER TABLE jobs ADD COLUMN processes INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
CREATE INDEX jobs_executor_status ON jobs(executor, status);
