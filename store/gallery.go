package store

import (
	"bytes"
	"cmp"
	"maps"
	"math"
	"slices"
	"time"
)

// pngSignature opens every PNG file.
var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// Sampler holds the sampler settings an image was generated with.
type Sampler struct {
	Name     string  `json:"name"` // e.g. "ddim", "euler"
	Steps    int     `json:"steps"`
	Guidance float64 `json:"guidance"` // classifier-free guidance scale
	Eta      float64 `json:"eta,omitempty"`
	Width    int     `json:"width"`
	Height   int     `json:"height"`
}

// GalleryImage is a generated image and how it was made. The PNG bytes are
// kept apart (GalleryImagePNG), so listing the gallery reads no pixels.
//
// A GalleryImage value is a copy owned by the caller, Scores included.
type GalleryImage struct {
	ID             string  `json:"id"`               // UUID
	RunID          string  `json:"run_id,omitempty"` // the generate run that made it
	SubjectID      string  `json:"subject_id,omitempty"`
	Prompt         string  `json:"prompt"`
	NegativePrompt string  `json:"negative_prompt,omitempty"`
	Seed           int64   `json:"seed"`
	Sampler        Sampler `json:"sampler"`

	// BaseModelID and CheckpointID name the weights that made the image:
	// a base model, and the personalized or aligned checkpoint on top of
	// it (empty for the base model alone).
	BaseModelID  string `json:"base_model_id,omitempty"`
	CheckpointID string `json:"checkpoint_id,omitempty"`

	// Hash is the lower-case hex SHA-256 of the PNG bytes and Size their
	// length; both are set by the store.
	Hash string `json:"hash"`
	Size int    `json:"size"`

	// Scores are evaluation scores by metric name (e.g. "clip_t",
	// "dino"); values must be finite.
	Scores map[string]float64 `json:"scores,omitempty"`

	Created time.Time `json:"created"`
}

// GalleryFilter selects gallery images. Zero fields match every image.
type GalleryFilter struct {
	RunID     string
	SubjectID string
}

// AddGalleryImage stores a new gallery image: the record g and its PNG
// bytes, in one transaction. g.RunID, if set, must name an existing run (an
// error wrapping ErrNotFound otherwise); png must start with the PNG
// signature. If g.ID is empty a new UUID is assigned; a zero g.Created
// becomes the current time; Hash and Size are computed. An image with the
// same id is replaced. On success the stored record is written back into
// *g. The store reads png only during the call.
func (db *DB) AddGalleryImage(g *GalleryImage, png []byte) error {
	if !bytes.HasPrefix(png, pngSignature) {
		return invalid("gallery image is not a PNG")
	}
	if err := checkScores(g.Scores); err != nil {
		return err
	}
	rec := *g
	if rec.ID != "" {
		if err := checkID("gallery image", rec.ID); err != nil {
			return err
		}
	} else {
		rec.ID = newID()
	}
	if rec.Created.IsZero() {
		rec.Created = now()
	}
	rec.Hash, rec.Size = hashOf(png), len(png)
	rec.Scores = maps.Clone(rec.Scores)
	err := db.update(func(b *buckets) error {
		if rec.RunID != "" {
			if _, err := getRun(b, rec.RunID); err != nil {
				return err
			}
		}
		if err := b.galleryPNG.Put([]byte(rec.ID), png); err != nil {
			return err
		}
		return putJSON(b.gallery, rec.ID, &rec)
	})
	if err == nil {
		*g = rec
	}
	return err
}

// checkScores rejects values JSON cannot hold.
func checkScores(scores map[string]float64) error {
	for name, v := range scores {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid("score %q is %v", name, v)
		}
	}
	return nil
}

// GalleryImage returns the gallery record with the given id, or an error
// wrapping ErrNotFound.
func (db *DB) GalleryImage(id string) (GalleryImage, error) {
	var g GalleryImage
	err := db.view(func(b *buckets) error {
		var err error
		g, err = getGalleryImage(b, id)
		return err
	})
	return g, err
}

// getGalleryImage reads a gallery record inside a transaction.
func getGalleryImage(b *buckets, id string) (GalleryImage, error) {
	var g GalleryImage
	found, err := getJSON(b.gallery, "gallery image", id, &g)
	if err == nil && !found {
		err = notFound("gallery image", id)
	}
	return g, err
}

// Gallery returns the gallery records that match f, oldest first (by
// Created, then id). It reads no PNG bytes.
func (db *DB) Gallery(f GalleryFilter) ([]GalleryImage, error) {
	var out []GalleryImage
	err := db.view(func(b *buckets) error {
		return eachJSON(b.gallery, "gallery image", func(_ string, g *GalleryImage) error {
			if (f.RunID == "" || f.RunID == g.RunID) && (f.SubjectID == "" || f.SubjectID == g.SubjectID) {
				out = append(out, *g)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y GalleryImage) int {
		return cmp.Or(x.Created.Compare(y.Created), cmp.Compare(x.ID, y.ID))
	})
	return out, nil
}

// GalleryImagePNG returns the PNG bytes of a gallery image. The slice is a
// copy owned by the caller and stays valid after the transaction and after
// Close. It returns an error wrapping ErrNotFound if there is no such image.
func (db *DB) GalleryImagePNG(id string) ([]byte, error) {
	var out []byte
	err := db.view(func(b *buckets) error {
		if v := b.galleryPNG.Get([]byte(id)); v != nil {
			out = clone(v)
			return nil
		}
		return notFound("gallery image", id)
	})
	return out, err
}

// SetGalleryScores merges scores into the image's Scores, replacing values
// of the same name, in one transaction. Values must be finite.
func (db *DB) SetGalleryScores(id string, scores map[string]float64) error {
	if err := checkScores(scores); err != nil {
		return err
	}
	return db.update(func(b *buckets) error {
		g, err := getGalleryImage(b, id)
		if err != nil {
			return err
		}
		if g.Scores == nil {
			g.Scores = map[string]float64{}
		}
		maps.Copy(g.Scores, scores)
		return putJSON(b.gallery, id, &g)
	})
}

// DeleteGalleryImage removes a gallery image, record and PNG. Ratings that
// name it are kept. It returns an error wrapping ErrNotFound if there is no
// such image.
func (db *DB) DeleteGalleryImage(id string) error {
	return db.update(func(b *buckets) error { return deleteGalleryImage(b, id) })
}

// deleteGalleryImage removes a gallery image inside a transaction.
func deleteGalleryImage(b *buckets, id string) error {
	if b.gallery.Get([]byte(id)) == nil {
		return notFound("gallery image", id)
	}
	if err := b.gallery.Delete([]byte(id)); err != nil {
		return err
	}
	return b.galleryPNG.Delete([]byte(id))
}
