package store

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// healthy holds the ids of a small database with one of everything.
type healthy struct {
	subject, imageHash, run, checkpoint, gallery string
}

// fillHealthy stores one record of every kind (and a second subject image).
func fillHealthy(t *testing.T, db *DB) healthy {
	t.Helper()
	rng := rand.New(rand.NewPCG(13, 14))
	img := randBytes(rng, 300)
	s := mustSubject(t, db, "Rex", Image{"a.png", img}, Image{"b.png", randBytes(rng, 300)})
	r := mustRun(t, db, Run{Kind: KindPersonalize, SubjectID: s.ID})
	if err := db.AppendMetric(r.ID, "loss", 1, 0.1); err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{RunID: r.ID, Kind: CheckpointLoRA, Step: 1}
	if err := db.PutCheckpoint(&c, randBytes(rng, 300)); err != nil {
		t.Fatal(err)
	}
	g := GalleryImage{RunID: r.ID, Prompt: "p"}
	if err := db.AddGalleryImage(&g, fakePNG(rng, 300)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBaseModel(&BaseModel{Name: "sd15", Path: "/m/sd15.safetensors"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutRating(&Rating{ImageA: g.ID, ImageB: g.ID, Choice: ChoiceTie}); err != nil {
		t.Fatal(err)
	}
	return healthy{s.ID, sha(img), r.ID, c.ID, g.ID}
}

// Ensure Check passes a healthy database and reports each kind of damage
// the store itself never writes.
func TestDB_Check_detectsDamage(t *testing.T) {
	const other = "9c4a1d2e-0000-4000-8000-000000000000"
	for _, tc := range []struct {
		name   string
		damage func(tx *bolt.Tx, h healthy) error
		want   string // substring of the report; "" for a healthy file
	}{
		{"healthy", func(*bolt.Tx, healthy) error { return nil }, ""},
		{"subject image missing", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketSubjectImages).Bucket([]byte(h.subject)).Delete([]byte(h.imageHash))
		}, "bytes missing"},
		{"subject image altered", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketSubjectImages).Bucket([]byte(h.subject)).Put([]byte(h.imageHash), make([]byte, 300))
		}, "content hash"},
		{"unlisted subject image", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketSubjectImages).Bucket([]byte(h.subject)).Put([]byte("extra"), []byte("x"))
		}, "not listed"},
		{"image bucket of no subject", func(tx *bolt.Tx, h healthy) error {
			_, err := tx.Bucket(bucketSubjectImages).CreateBucket([]byte(other))
			return err
		}, "not a subject's image bucket"},
		{"undecodable run", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketRuns).Put([]byte(h.run), []byte("{"))
		}, "does not decode"},
		{"record under another key", func(tx *bolt.Tx, h healthy) error {
			b := tx.Bucket(bucketSubjects)
			return b.Put([]byte(other), b.Get([]byte(h.subject)))
		}, "has id"},
		{"bad run status", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketRuns).Put([]byte(h.run), []byte(`{"id":"`+h.run+`","kind":"align","status":"paused","config":{}}`))
		}, `status "paused"`},
		{"metrics of no run", func(tx *bolt.Tx, h healthy) error {
			_, err := tx.Bucket(bucketMetrics).CreateBucket([]byte(other))
			return err
		}, "not an existing run"},
		{"run deleted under its checkpoint", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketRuns).Delete([]byte(h.run))
		}, "belongs to missing run"},
		{"tensors of no checkpoint", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketTensors).Put([]byte(other), []byte("x"))
		}, "belong to no LoRA checkpoint"},
		{"tensors truncated", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketTensors).Put([]byte(h.checkpoint), []byte("x"))
		}, "record says 300"},
		{"gallery PNG missing", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketGalleryPNG).Delete([]byte(h.gallery))
		}, "bytes missing"},
		{"gallery PNG without record", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketGallery).Delete([]byte(h.gallery))
		}, "has no record"},
		{"bucket missing", func(tx *bolt.Tx, h healthy) error {
			return tx.DeleteBucket(bucketRatings)
		}, `bucket "ratings" is missing`},
		{"old schema marker", func(tx *bolt.Tx, h healthy) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("1"))
		}, "schema version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), FileName), testOptions)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			h := fillHealthy(t, db)
			if err := db.bolt.Update(func(tx *bolt.Tx) error { return tc.damage(tx, h) }); err != nil {
				t.Fatal(err)
			}
			err = db.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("healthy database: %v", err)
			case tc.want == "":
			case !errors.Is(err, ErrCorrupt):
				t.Fatalf("Check = %v, want ErrCorrupt", err)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("report %q does not mention %q", err, tc.want)
			}
		})
	}
}
