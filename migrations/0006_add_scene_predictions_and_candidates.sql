-- Scene predictions of a classification run (each image's predicted scene, its probability, and
-- the top three as JSON [[scene, probability], ...]), and the candidates a minimum-Bayes-risk
-- generation chose among (each with its mean CIDEr-D against the others).

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
