package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside the data directory.
const FileName = "instructbooth.db"

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// Bucket names. The layout is described in the package documentation.
var (
	bucketMeta          = []byte("meta")
	bucketSubjects      = []byte("subjects")
	bucketSubjectImages = []byte("subject_images")
	bucketModels        = []byte("models")
	bucketRuns          = []byte("runs")
	bucketMetrics       = []byte("metrics")
	bucketCheckpoints   = []byte("checkpoints")
	bucketTensors       = []byte("checkpoint_tensors")
	bucketGallery       = []byte("gallery")
	bucketGalleryPNG    = []byte("gallery_png")
	bucketRatings       = []byte("ratings")
)

// allBuckets lists every top-level bucket of the current schema.
var allBuckets = [][]byte{
	bucketMeta, bucketSubjects, bucketSubjectImages, bucketModels, bucketRuns,
	bucketMetrics, bucketCheckpoints, bucketTensors, bucketGallery,
	bucketGalleryPNG, bucketRatings,
}

// Options are the options of Open. A nil *Options means the defaults.
type Options struct {
	// Timeout is how long Open waits for the exclusive lock on the file
	// before it gives up with ErrLocked. Zero means DefaultTimeout. A
	// negative value means a single attempt.
	Timeout time.Duration
}

// DB is an open InstructBooth database. It is safe for concurrent use by
// multiple goroutines: reads run in parallel, writes are serialized.
//
// Every method runs in its own bbolt transaction and is atomic: it either
// applies all its changes or none. When a writing method returns nil, its
// changes have been synced to disk.
type DB struct {
	bolt *bolt.DB
	path string
}

// Open opens the database at path, creating it (and its directory) if it
// does not exist. It takes an exclusive lock on the file for the life of
// the DB; if another process holds it, Open waits Options.Timeout and then
// returns an error wrapping ErrLocked that names the file.
//
// A database written with an older schema is migrated to the current one in
// a single transaction before Open returns; a failed migration leaves the
// file as it was. A database with a newer schema gets ErrSchemaTooNew and is
// not modified.
//
// Finally Open calls MarkInterrupted: while the DB holds the lock no other
// process can be running a run, so any run still marked running was left so
// by a crash.
func Open(path string, opts *Options) (*DB, error) {
	if opts == nil {
		opts = &Options{}
	}
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = time.Nanosecond
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}

	bopts := *bolt.DefaultOptions
	bopts.Timeout = timeout
	bdb, err := bolt.Open(path, 0o600, &bopts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s: %w", path, ErrLocked)
	} else if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	db := &DB{bolt: bdb, path: path}
	if err := db.init(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if _, err := db.MarkInterrupted(); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	return db, nil
}

// Close releases the file lock and closes the database. It waits for
// running transactions to finish. Values returned earlier by the DB stay
// valid: they are copies. Calling Close more than once is harmless.
func (db *DB) Close() error {
	return db.bolt.Close()
}

// Path returns the path of the database file, as given to Open.
func (db *DB) Path() string { return db.path }

// String returns a description of the DB for logs.
func (db *DB) String() string { return fmt.Sprintf("store.DB<%q>", db.path) }

// DefaultPath returns where the app keeps its database:
// $INSTRUCTBOOTH_DATA/instructbooth.db when that variable is set, otherwise
// <user data directory>/InstructBooth/instructbooth.db, where the user data
// directory is %LocalAppData% on Windows, ~/Library/Application Support on
// macOS and $XDG_DATA_HOME (default ~/.local/share) elsewhere. It creates
// nothing; Open creates the directory.
func DefaultPath() (string, error) {
	if dir := os.Getenv("INSTRUCTBOOTH_DATA"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("store: INSTRUCTBOOTH_DATA: %w", err)
		}
		return filepath.Join(abs, FileName), nil
	}
	dir, err := userDataDir()
	if err != nil {
		return "", fmt.Errorf("store: no data directory (set INSTRUCTBOOTH_DATA): %w", err)
	}
	return filepath.Join(dir, "InstructBooth", FileName), nil
}

// userDataDir follows each platform's convention for per-user application
// data that is not configuration.
func userDataDir() (string, error) {
	switch runtime.GOOS {
	case "windows":
		if d := os.Getenv("LocalAppData"); d != "" {
			return d, nil
		}
		return os.UserConfigDir()
	case "darwin", "ios", "plan9":
		return os.UserConfigDir()
	default:
		if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
			return d, nil
		}
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		return filepath.Join(home, ".local", "share"), nil
	}
}

// buckets holds the top-level buckets of one transaction. They are valid
// only for the life of that transaction.
type buckets struct {
	meta, subjects, subjectImages *bolt.Bucket
	models, runs, metrics         *bolt.Bucket
	checkpoints, tensors          *bolt.Bucket
	gallery, galleryPNG, ratings  *bolt.Bucket
}

// openBuckets looks up every top-level bucket; a missing one is corruption,
// since Open creates them all.
func openBuckets(tx *bolt.Tx) (*buckets, error) {
	b := &buckets{}
	for _, p := range []struct {
		dst  **bolt.Bucket
		name []byte
	}{
		{&b.meta, bucketMeta}, {&b.subjects, bucketSubjects},
		{&b.subjectImages, bucketSubjectImages}, {&b.models, bucketModels},
		{&b.runs, bucketRuns}, {&b.metrics, bucketMetrics},
		{&b.checkpoints, bucketCheckpoints}, {&b.tensors, bucketTensors},
		{&b.gallery, bucketGallery}, {&b.galleryPNG, bucketGalleryPNG},
		{&b.ratings, bucketRatings},
	} {
		if *p.dst = tx.Bucket(p.name); *p.dst == nil {
			return nil, corrupt("bucket %q is missing", p.name)
		}
	}
	return b, nil
}

// view runs fn in a read-only transaction.
func (db *DB) view(fn func(b *buckets) error) error {
	return db.closedErr(db.bolt.View(func(tx *bolt.Tx) error {
		b, err := openBuckets(tx)
		if err != nil {
			return err
		}
		return fn(b)
	}))
}

// update runs fn in a read-write transaction, committed (and synced) if fn
// returns nil and rolled back otherwise.
func (db *DB) update(fn func(b *buckets) error) error {
	return db.closedErr(db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := openBuckets(tx)
		if err != nil {
			return err
		}
		return fn(b)
	}))
}

// closedErr turns bbolt's "database not open" into ErrClosed.
func (db *DB) closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("store: %s: %w", db.path, ErrClosed)
	}
	return err
}

// getJSON decodes the value at key into v. It reports false, and leaves v
// alone, when the key does not exist. The decoded value shares no memory
// with the bbolt page. kind names the record in errors.
func getJSON(b *bolt.Bucket, kind, key string, v any) (bool, error) {
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, corrupt("%s %q: %v", kind, key, err)
	}
	return true, nil
}

// putJSON encodes v and stores it at key.
func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return invalid("%v", err)
	}
	return b.Put([]byte(key), data)
}

// eachJSON decodes every value of b in key order into a fresh T and calls
// fn. kind names the records in errors.
func eachJSON[T any](b *bolt.Bucket, kind string, fn func(key string, v *T) error) error {
	return b.ForEach(func(k, data []byte) error {
		if data == nil {
			return corrupt("%s bucket holds a nested bucket %q", kind, k)
		}
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return corrupt("%s %q: %v", kind, k, err)
		}
		return fn(string(k), v)
	})
}

// clone returns a copy of p that shares no memory with it; nil stays nil.
func clone(p []byte) []byte {
	if p == nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

// hashOf returns the lower-case hex SHA-256 of data.
func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// newID returns a fresh random UUID string.
func newID() string { return uuid.NewString() }

// checkID validates an id a caller chose.
func checkID(kind, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return invalid("%s id %q is not a UUID", kind, id)
	}
	return nil
}

// now returns the current time in UTC without a monotonic reading, so that
// it survives a JSON round trip unchanged.
func now() time.Time { return time.Now().UTC().Round(0) }
