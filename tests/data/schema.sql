CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('captioning', 'segmentation')),
    source_format TEXT NOT NULL,          -- 'karpathy', 'coco', 'drone'
    root TEXT NOT NULL,                   -- absolute folder the image paths are relative to
    annotations TEXT,                     -- absolute path of the annotation file, if any
    meta TEXT NOT NULL DEFAULT '{}',      -- JSON: class table of a segmentation set, ingest options
    created_at TEXT NOT NULL
, superseded_at TEXT);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,               -- as the annotation file names it
    path TEXT NOT NULL,                   -- relative to datasets.root
    label_path TEXT,                      -- ground-truth class-index mask (segmentation sets), relative to root
    split TEXT CHECK (split IN ('train', 'val', 'test')),
    scene TEXT,
    width INTEGER,
    height INTEGER,
    file_size INTEGER,
    sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'missing', 'corrupt')),
    status_detail TEXT,                   -- why an image is missing or corrupt
    source_id TEXT,                       -- the id the source file gave it (COCO image id, Karpathy imgid)
    UNIQUE (dataset_id, filename)
);
CREATE INDEX images_dataset_split ON images(dataset_id, split);
CREATE INDEX images_dataset_scene ON images(dataset_id, scene);
CREATE TABLE captions (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,                 -- position among the image's references, from 0
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,                 -- space-separated tokens (the source's when it has them)
    is_duplicate INTEGER NOT NULL DEFAULT 0 CHECK (is_duplicate IN (0, 1)),  -- repeats an earlier reference of the same image
    UNIQUE (image_id, idx)
);
CREATE VIRTUAL TABLE captions_fts USING fts5(text, content='captions', content_rowid='id');
CREATE TABLE 'captions_fts_data'(id INTEGER PRIMARY KEY, block BLOB);
CREATE TABLE 'captions_fts_idx'(segid, term, pgno, PRIMARY KEY(segid, term)) WITHOUT ROWID;
CREATE TABLE 'captions_fts_docsize'(id INTEGER PRIMARY KEY, sz BLOB);
CREATE TABLE 'captions_fts_config'(k PRIMARY KEY, v) WITHOUT ROWID;
CREATE TRIGGER captions_ad AFTER DELETE ON captions BEGIN
    INSERT INTO captions_fts(captions_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER captions_au AFTER UPDATE OF text ON captions BEGIN
    INSERT INTO captions_fts(captions_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO captions_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TABLE masks (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    class_hist TEXT NOT NULL,             -- JSON list: pixel count per class group
    PRIMARY KEY (run_id, image_id)
);
CREATE TABLE compositions (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    data TEXT NOT NULL,                   -- JSON composition
    prompt TEXT NOT NULL,
    PRIMARY KEY (run_id, image_id)
);
CREATE TABLE generations (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (run_id, image_id)
);
CREATE TABLE scores (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, image_id, metric)
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded',
                                                            'failed', 'cancelled', 'interrupted')),
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    pid INTEGER,
    host TEXT,
    log_path TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    heartbeat_at TEXT,
    error TEXT
, cancel_requested INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 1, retry_of INTEGER REFERENCES jobs(id) ON DELETE SET NULL, uses_gpu INTEGER NOT NULL DEFAULT 0, executor TEXT NOT NULL DEFAULT 'local', external_id TEXT, gpus_needed INTEGER NOT NULL DEFAULT 0, gpus TEXT, processes INTEGER NOT NULL DEFAULT 1, resources TEXT NOT NULL DEFAULT '{}');
CREATE INDEX jobs_status ON jobs(status, id);
CREATE TABLE job_events (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    ts TEXT NOT NULL,
    step INTEGER,
    total INTEGER,
    message TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX job_events_job ON job_events(job_id, id);
CREATE TABLE job_deps (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    after_job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, after_job_id)
);
CREATE INDEX job_deps_after ON job_deps(after_job_id);
CREATE TABLE runners (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at TEXT
);
CREATE INDEX generations_image ON generations(image_id);
CREATE INDEX masks_image ON masks(image_id);
CREATE INDEX compositions_image ON compositions(image_id);
CREATE TABLE "runs" (
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
CREATE INDEX runs_family ON runs(family, version);
CREATE INDEX runs_parent ON runs(parent_run_id);
CREATE TABLE "ratings" (
    id INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE RESTRICT,
    reviewer TEXT NOT NULL,
    score INTEGER CHECK (score BETWEEN 1 AND 5),
    flags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    undoes INTEGER REFERENCES ratings(id)  -- this row withdraws that one (deleted only together, by `runs delete`)
);
CREATE INDEX ratings_generation_reviewer ON ratings(generation_id, reviewer, id);
CREATE INDEX jobs_executor_status ON jobs(executor, status);
CREATE TABLE predictions (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    scene TEXT NOT NULL,
    probability REAL NOT NULL,
    top TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, image_id)
);
CREATE INDEX predictions_image ON predictions(image_id);
CREATE TABLE candidates (
    generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (generation_id, idx)
);
CREATE TABLE comparisons (
    id INTEGER PRIMARY KEY,
    left_generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE RESTRICT,
    right_generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE RESTRICT,
    reviewer TEXT NOT NULL,
    choice TEXT CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    created_at TEXT NOT NULL,
    undoes INTEGER REFERENCES comparisons(id)
);
CREATE INDEX comparisons_left ON comparisons(left_generation_id, reviewer, id);
CREATE INDEX comparisons_right ON comparisons(right_generation_id, reviewer, id);
CREATE TABLE reference_flags (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL,
    filename TEXT NOT NULL,
    text TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    flag TEXT CHECK (flag IN ('misspelt', 'duplicated', 'not this image')),
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX reference_flags_image ON reference_flags(dataset, filename, id);
