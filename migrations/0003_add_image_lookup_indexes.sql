-- The Image screen reads every run's mask, composition and caption of one image; without these
-- indexes each of those reads scans its whole table.
CREATE INDEX generations_image ON generations(image_id);
CREATE INDEX masks_image ON masks(image_id);
CREATE INDEX compositions_image ON compositions(image_id);
