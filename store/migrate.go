package store

import (
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the schema this code reads and writes. It is stored as
// decimal text under the key "schema" of the meta bucket.
//
// History:
//
//	1  subject records kept their images inline (base64 in the JSON).
//	2  image bytes live in subject_images/<subject id>/<sha256>; subject
//	   records keep only name, hash, size and time of each image.
const SchemaVersion = 2

var keySchema = []byte("schema")

// migrations[v] upgrades a version-v database to version v+1. It runs inside
// the transaction of migrate, together with every other step, so a failure
// anywhere leaves the file at its old version.
var migrations = map[int]func(tx *bolt.Tx) error{
	1: migrate1to2,
}

// init brings the file to the current schema: a new file gets the current
// layout, an older one is migrated, a newer one is refused untouched.
func (db *DB) init() error {
	var version int
	var fresh bool
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		version, fresh, err = readSchema(tx)
		return err
	})
	switch {
	case err != nil:
		return err
	case fresh:
		return db.bolt.Update(func(tx *bolt.Tx) error { return finishSchema(tx) })
	case version > SchemaVersion:
		return fmt.Errorf("%w (the file has schema %d, this InstructBooth knows up to %d)",
			ErrSchemaTooNew, version, SchemaVersion)
	case version < SchemaVersion:
		return db.bolt.Update(func(tx *bolt.Tx) error { return migrate(tx, version) })
	}
	return nil
}

// readSchema returns the schema version of the file, or fresh = true for a
// file without any bucket.
func readSchema(tx *bolt.Tx) (version int, fresh bool, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if empty {
			return 0, true, nil
		}
		return 0, false, ErrNotStore
	}
	v := meta.Get(keySchema)
	if v == nil {
		return 0, false, corrupt("meta bucket has no schema version")
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		return 0, false, corrupt("meta bucket has schema version %q", v)
	}
	return n, false, nil
}

// migrate runs every migration from version from up to SchemaVersion in tx.
func migrate(tx *bolt.Tx, from int) error {
	for v := from; v < SchemaVersion; v++ {
		m := migrations[v]
		if m == nil {
			return corrupt("no migration from schema %d", v)
		}
		if err := m(tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	return finishSchema(tx)
}

// finishSchema creates every bucket of the current schema that is missing
// and records the current version.
func finishSchema(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
}

// subjectV1 is a subject record of schema 1, images inline.
type subjectV1 struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Class       string    `json:"class"`
	Identifier  string    `json:"identifier"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Images      []struct {
		Name  string    `json:"name"`
		Data  []byte    `json:"data"`
		Added time.Time `json:"added"`
	} `json:"images"`
}

// migrate1to2 moves the inline images of every subject into
// subject_images/<subject id>/<sha256>, dropping duplicates and empty
// images (which schema 2 does not accept), and rewrites
// the subject records without the bytes. Subjects are converted one at a
// time so that only one subject's images are in memory at once.
func migrate1to2(tx *bolt.Tx) error {
	subjects := tx.Bucket(bucketSubjects)
	if subjects == nil {
		return nil // nothing to convert; finishSchema creates the buckets
	}
	images, err := tx.CreateBucketIfNotExists(bucketSubjectImages)
	if err != nil {
		return err
	}
	var keys []string
	if err := subjects.ForEach(func(k, _ []byte) error {
		keys = append(keys, string(k))
		return nil
	}); err != nil {
		return err
	}
	for _, key := range keys {
		var old subjectV1
		if _, err := getJSON(subjects, "schema-1 subject", key, &old); err != nil {
			return err
		}
		blobs, err := images.CreateBucketIfNotExists([]byte(key))
		if err != nil {
			return err
		}
		s := Subject{
			ID: key, Name: old.Name, Class: old.Class, Identifier: old.Identifier,
			Description: old.Description, Created: old.Created, Images: []ImageRef{},
		}
		seen := map[string]bool{}
		for _, img := range old.Images {
			h := hashOf(img.Data)
			if len(img.Data) == 0 || seen[h] {
				continue
			}
			seen[h] = true
			if err := blobs.Put([]byte(h), img.Data); err != nil {
				return err
			}
			s.Images = append(s.Images, ImageRef{Name: img.Name, Hash: h, Size: len(img.Data), Added: img.Added})
		}
		if err := putJSON(subjects, key, &s); err != nil {
			return err
		}
	}
	return nil
}
