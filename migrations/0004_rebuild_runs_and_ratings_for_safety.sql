-- Nothing a person made is lost, and no run takes another's name.
--
-- runs: a run belongs to a family (the name a user types) and has a version in it; a bare name
-- means the family's newest version. A replaced run that holds ratings is kept with status
-- 'superseded'. The kinds 'classifier' and 'classification' (scene classifier) are allowed.
-- ratings: no delete of a run, a generation or a dataset may reach them (RESTRICT, not
-- CASCADE); an undo is a new row that records what it undoes, so history is complete.
-- datasets: a replaced dataset whose captions were rated is kept, marked superseded.
--
-- Both rebuilds follow SQLite's procedure (create, copy, drop, rename); the migration runner
-- switches foreign keys off outside the transaction and checks them before it commits.

CREATE TABLE runs_new (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('segmenter', 'segmentation', 'composition', 'captioner', 'generation',
                                       'evaluation', 'baseline', 'classifier', 'classification')),
    name TEXT NOT NULL UNIQUE,            -- family, or family.version for versions after the first
    family TEXT NOT NULL,                 -- what a bare name means: the newest version of this family
    version INTEGER NOT NULL DEFAULT 1,
    parent_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    dataset_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
    params TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    artifact_dir TEXT,
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'failed', 'superseded')),
    superseded_by INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
INSERT INTO runs_new (id, kind, name, family, version, parent_run_id, dataset_id, params, metrics, artifact_dir, status,
                      created_at, finished_at)
    SELECT id, kind, name, name, 1, parent_run_id, dataset_id, params, metrics, artifact_dir, status, created_at, finished_at
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_family ON runs(family, version);
CREATE INDEX runs_parent ON runs(parent_run_id);

CREATE TABLE ratings_new (
    id INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE RESTRICT,
    reviewer TEXT NOT NULL,
    score INTEGER CHECK (score BETWEEN 1 AND 5),
    flags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    undoes INTEGER REFERENCES ratings(id)  -- this row withdraws that one (deleted only together, by `runs delete`)
);
INSERT INTO ratings_new (id, generation_id, reviewer, score, flags, note, created_at)
    SELECT id, generation_id, reviewer, score, flags, note, created_at FROM ratings;
DROP TABLE ratings;
ALTER TABLE ratings_new RENAME TO ratings;
CREATE INDEX ratings_generation_reviewer ON ratings(generation_id, reviewer, id);

ALTER TABLE datasets ADD COLUMN superseded_at TEXT;
