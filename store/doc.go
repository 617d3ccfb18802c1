/*
Package store is InstructBooth's persistence layer: one bbolt file that holds
the user's subjects and their training images, the base models they know
about, every run (personalization, alignment, generation, evaluation) with
its configuration, status, progress and metric history, the checkpoints the
runs saved, the gallery of generated images and the user's pairwise ratings.

Base model weights and full fine-tunes are gigabytes and stay on disk as
files; the database records their path and SHA-256. Everything else that is
small enough (subject images, LoRA tensors, gallery PNGs) lives in the file,
so that copying instructbooth.db copies the user's work.

# Basics

Open a database with Open and close it with Close. DefaultPath says where the
app keeps it ($INSTRUCTBOOTH_DATA, or the platform's per-user data
directory). The DB type has one method per operation: PutSubject, Subject,
Subjects, AddSubjectImages, PutRun, AppendMetric, SetRunStatus,
PutCheckpoint, LatestCheckpoint, AddGalleryImage, Gallery, PutRating,
PreferenceRate and so on. There is no transaction type to manage: each
method is one bbolt transaction. Records are plain structs, ids are UUID
strings that the Put and Add methods assign when the caller leaves them
empty.

A DB is safe for concurrent use. Reads run in parallel with each other and
(except while the file grows and bbolt remaps it) with the one writer; writes
are serialized by bbolt, and each write waits for its fsync, so a training loop that logs a metric per step pays one sync per
call (AppendMetrics logs several series at once).

# One instance at a time

Open takes bbolt's exclusive file lock (flock on Unix, LockFileEx on
Windows) and waits at most Options.Timeout (one second by default) for it. A
second InstructBooth on the same file therefore gets an error wrapping
ErrLocked, "database is already open by another InstructBooth", naming the
file, instead of hanging. Holding the lock also means that a run marked
running in a file just opened cannot be running anywhere: Open calls
MarkInterrupted, which turns every such run into an interrupted one, whose
latest checkpoint the app can offer to resume from.

# Buckets

The file holds these top-level buckets (schema 2):

	meta                 "schema" -> the schema version, decimal text
	subjects             subject id -> Subject (JSON; image names and hashes, no bytes)
	subject_images       subject id -> bucket: sha256 hex -> image bytes
	models               base model id -> BaseModel (JSON)
	runs                 run id -> Run (JSON; no metrics)
	metrics              run id -> bucket: series name -> bucket: step -> value
	checkpoints          checkpoint id -> Checkpoint (JSON)
	checkpoint_tensors   checkpoint id -> LoRA tensor bytes
	gallery              gallery image id -> GalleryImage (JSON; no pixels)
	gallery_png          gallery image id -> PNG bytes
	ratings              rating id -> Rating (JSON)

Bytes live apart from the records that describe them, so listing subjects or
the gallery decodes a few hundred bytes per record and never touches an
image. Lists are produced by scanning a bucket and sorting in memory, which
is cheap at the scale of one user's work (thousands of records); there are
no secondary indexes to keep consistent.

# Encoding

Records are JSON: readable with the bbolt command-line tool, tolerant of
fields added later (an older record simply lacks them), and the natural
home of Run.Config, which is a JSON object owned by the training code. Times
are RFC 3339 with nanoseconds; the times the store sets itself are UTC.

JSON has no NaN or infinity, and a diverging loss is exactly when a user
wants the curve, so metric points are binary instead: the key is the step as
8 big-endian bytes (bbolt's byte order is then step order) and the value is
the IEEE 754 bits of the float64 as 8 big-endian bytes. Gallery scores are
JSON and must be finite; the Add and Set methods reject NaN with ErrInvalid.

Blobs are stored as given. Subject images are keyed by their SHA-256, which
is also how AddSubjectImages recognizes duplicates; LoRA tensors and PNGs
are keyed by their record's id, and the record keeps their size and SHA-256.

# Lifetimes

bbolt's values point into its memory map and are valid only for the life of
their transaction. The store never lets one escape: every record is decoded
into fresh memory and every blob is copied before the transaction ends. A
value returned by the DB is owned by the caller: it may be kept after the
transaction, after later writes remap or reuse the pages it came from, and
after Close; mutating it changes nothing in the database.

In the other direction, the store reads the caller's arguments only during
the call: a byte slice passed to AddSubjectImages, PutCheckpoint or
AddGalleryImage must not change until the call returns and may be reused
after. Put and Add methods write the stored record (the assigned id, the
creation time, computed hashes) back into the struct the caller passed.

# Crash guarantees

Every method that writes does so in one bbolt transaction, so it is atomic:
an AddSubjectImages call never stores half its images, a gallery record never
exists without its PNG, a checkpoint record never without its tensors, a
deleted run never leaves half its checkpoints. When a
writing method returns nil, bbolt has fsynced the data and the meta page;
after a crash the file opens at the last committed transaction.

TestDB_update_survivesSIGKILL checks this for process crashes: a child
process writes in a loop, appending each committed id to an fsynced side
file, and is killed with SIGKILL at random moments; after every kill the
parent opens the file, runs Check and verifies every committed id byte for
byte. Power loss adds nothing the store can control: it relies on bbolt's
two meta pages and on the disk honouring fsync.

# Schema versions and migration

The schema version is stored in the meta bucket. Open migrates an older file
by running every step from its version to SchemaVersion in a single write
transaction, so a failed or interrupted migration leaves the old file
intact. Version 1 kept subject images inline in the subject record; the step
to version 2 moves them into subject_images. A file whose version is newer
than SchemaVersion gets ErrSchemaTooNew and is not written to at all, so an
older InstructBooth cannot damage a newer one's data.

# Consistency

Check runs bbolt's own page-level check and then the store's invariants
across buckets: every image a subject lists exists with its size and hash
and every stored image is listed; every metric series, checkpoint and
gallery image belongs to an existing run; every blob matches its record and
has one. Deleting a subject removes its images; deleting a run removes its
metrics, checkpoints and gallery images. Other references (a run's subject
or base model, a rating's images) are history and may outlive what they
name. The tests run Check in every test's cleanup.

# Errors

Errors wrap the sentinels ErrNotFound, ErrInvalid, ErrLocked,
ErrSchemaTooNew, ErrNotStore, ErrCorrupt and ErrClosed; test them with
errors.Is. The wrapping text names the record kind and id, or the file.
*/
package store
