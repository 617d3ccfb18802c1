package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// v1Image and v1Subject spell out the schema-1 subject record: images
// inline, their bytes base64 in the JSON. They are written independently of
// the store's own decoder so the test pins the old format.
type v1Image struct {
	Name  string    `json:"name"`
	Data  []byte    `json:"data"`
	Added time.Time `json:"added"`
}

type v1Subject struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Class      string    `json:"class"`
	Identifier string    `json:"identifier"`
	Created    time.Time `json:"created"`
	Images     []v1Image `json:"images"`
}

// writeV1 creates a schema-1 file at path: every bucket of schema 2 except
// subject_images, the given subject records (raw JSON values by id) and
// the given run records.
func writeV1(t *testing.T, path string, subjects map[string][]byte, runs map[string][]byte) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if bytes.Equal(name, bucketSubjectImages) {
				continue
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, []byte("1")); err != nil {
			return err
		}
		for id, v := range subjects {
			if err := tx.Bucket(bucketSubjects).Put([]byte(id), v); err != nil {
				return err
			}
		}
		for id, v := range runs {
			if err := tx.Bucket(bucketRuns).Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rawSchema reads the schema marker of a file without the store.
func rawSchema(t *testing.T, path string) string {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	var v string
	_ = bdb.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	return v
}

// Ensure a schema-1 file is migrated at Open: images move to their own
// bucket (duplicates and empty ones dropped), every field survives, and
// the result passes Check.
func TestOpen_schema1_migrates(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	t0 := time.Date(2023, 3, 1, 12, 0, 0, 0, time.UTC)
	rex := v1Subject{
		ID: "11111111-1111-4111-8111-111111111111", Name: "Rex", Class: "dog", Identifier: "sks", Created: t0,
		Images: []v1Image{
			{"rex1.jpg", []byte("jpeg one"), t0},
			{"rex2.jpg", []byte("jpeg two"), t0.Add(time.Minute)},
			{"rex1 copy.jpg", []byte("jpeg one"), t0.Add(2 * time.Minute)},
			{"empty.jpg", nil, t0},
		},
	}
	max2 := v1Subject{ID: "22222222-2222-4222-8222-222222222222", Name: "Max", Created: t0}
	runID := "33333333-3333-4333-8333-333333333333"
	run := `{"id":"` + runID + `","kind":"personalize","subject_id":"` + rex.ID + `","config":{"steps":800},"status":"running","progress":{"step":10,"total":800},"created":"2023-03-01T12:00:00Z"}`
	writeV1(t, path,
		map[string][]byte{rex.ID: mustJSON(t, rex), max2.ID: mustJSON(t, max2)},
		map[string][]byte{runID: []byte(run)})

	db := mustOpenPath(t, path)
	if v := rawSchemaOf(t, db); v != strconv.Itoa(SchemaVersion) {
		t.Errorf("schema after migration = %q", v)
	}
	got, err := db.Subject(rex.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Rex" || got.Class != "dog" || got.Identifier != "sks" || !got.Created.Equal(t0) {
		t.Errorf("subject fields: %+v", got)
	}
	want := []ImageRef{
		{"rex1.jpg", sha([]byte("jpeg one")), 8, t0},
		{"rex2.jpg", sha([]byte("jpeg two")), 8, t0.Add(time.Minute)},
	}
	if len(got.Images) != len(want) {
		t.Fatalf("images %+v, want %+v", got.Images, want)
	}
	for i, ref := range got.Images {
		if ref.Name != want[i].Name || ref.Hash != want[i].Hash || ref.Size != want[i].Size || !ref.Added.Equal(want[i].Added) {
			t.Errorf("image %d = %+v, want %+v", i, ref, want[i])
		}
		if p, err := db.SubjectImage(rex.ID, ref.Hash); err != nil || p == nil {
			t.Errorf("image %d bytes: %v", i, err)
		}
	}
	if m, err := db.Subject(max2.ID); err != nil || m.Images == nil || len(m.Images) != 0 {
		t.Errorf("subject without images: %+v, %v", m, err)
	}
	r, err := db.Run(runID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusInterrupted || r.Progress.Step != 10 || string(r.Config) != `{"steps":800}` {
		t.Errorf("run after migration: %+v", r)
	}
}

// rawSchemaOf reads the schema marker through an open DB.
func rawSchemaOf(t *testing.T, db *DB) string {
	t.Helper()
	var v string
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	return v
}

// Ensure a migration that fails part-way leaves the schema-1 file exactly
// as it was (one transaction).
func TestOpen_schema1_failedMigrationLeavesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	good := v1Subject{ID: "11111111-1111-4111-8111-111111111111", Name: "Rex",
		Images: []v1Image{{"a.jpg", []byte("a"), time.Time{}}}}
	writeV1(t, path, map[string][]byte{
		good.ID:                                mustJSON(t, good),
		"ffffffff-ffff-4fff-8fff-ffffffffffff": []byte(`{"id": "broken`),
	}, nil)
	before := fileHash(t, path)
	db, err := Open(path, testOptions)
	if err == nil {
		db.Close()
		t.Fatal("Open migrated a file with an undecodable subject")
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "migrate schema 1 to 2") {
		t.Errorf("error = %v", err)
	}
	if fileHash(t, path) != before || rawSchema(t, path) != "1" {
		t.Error("a failed migration changed the file")
	}
}

// Ensure a file with a newer schema gets ErrSchemaTooNew, is not modified,
// and is not left locked.
func TestOpen_schemaTooNew_untouched(t *testing.T) {
	db := mustOpen(t)
	fillHealthy(t, db)
	path := db.Path()
	newer := strconv.Itoa(SchemaVersion + 1)
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(newer))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	before := fileHash(t, path)
	db2, err := Open(path, testOptions)
	if err == nil {
		db2.Close()
		t.Fatal("Open accepted a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), newer) {
		t.Errorf("error = %v, want ErrSchemaTooNew naming schema %s", err, newer)
	}
	if fileHash(t, path) != before {
		t.Error("Open modified a file with a newer schema")
	}
	if v := rawSchema(t, path); v != newer {
		t.Errorf("schema now %q", v)
	}
	// Put the marker back so the cleanup's consistency check can open it.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	_ = bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
	})
}
