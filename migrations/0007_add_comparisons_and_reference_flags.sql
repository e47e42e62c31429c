-- Judgments people make beyond ratings; like ratings they are never deleted by a job, a replace
-- or a migration.
--
-- comparisons: one reviewer's verdict on two runs' captions of the same image, shown blind with
-- the left/right order drawn per reviewer and image (recorded here, so position bias can be
-- checked). choice NULL withdraws an earlier verdict; an undo is a new row recording what it
-- undoes, as with ratings.
-- reference_flags: a reviewer's flag on one reference caption of a dataset (misspelt,
-- duplicated, not this image). Keyed by the dataset's name, the image's filename and the
-- reference's text rather than by row ids, so a flag survives re-ingest of the same dataset;
-- flag NULL clears it. The newest row of a reviewer on a reference is their current flag.

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
