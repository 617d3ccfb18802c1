package store

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Subject is a person, pet or object that a model is personalized on: a
// name for the user, the class noun and the rare identifier token of the
// DreamBooth prompt ("a photo of sks dog"), and a set of training images.
//
// A Subject value is a copy owned by the caller: changing it changes
// nothing in the database until it is passed to PutSubject.
type Subject struct {
	ID          string    `json:"id"`                    // UUID
	Name        string    `json:"name"`                  // shown to the user; required
	Class       string    `json:"class"`                 // class noun, e.g. "dog"
	Identifier  string    `json:"identifier"`            // rare token, e.g. "sks"
	Description string    `json:"description,omitempty"` // free text
	Created     time.Time `json:"created"`

	// Images lists the subject's images in the order they were added. It
	// holds no bytes; SubjectImage reads them. It is maintained by
	// AddSubjectImages and RemoveSubjectImage only: PutSubject ignores it.
	Images []ImageRef `json:"images"`
}

// ImageRef describes one stored image of a subject.
type ImageRef struct {
	Name  string    `json:"name"` // original file name
	Hash  string    `json:"hash"` // lower-case hex SHA-256 of the bytes
	Size  int       `json:"size"` // length of the bytes
	Added time.Time `json:"added"`
}

// Image is an image to add to a subject: its original file name and its
// encoded bytes (PNG, JPEG, ...; the store does not decode them).
type Image struct {
	Name string
	Data []byte
}

// PutSubject creates or updates a subject. If s.ID is empty a new UUID is
// assigned; a non-empty ID must be a UUID. A zero s.Created becomes the
// current time for a new subject and is kept for an existing one. s.Images
// is ignored: a new subject starts without images and an existing one keeps
// its own. On success PutSubject writes the stored ID, Created and Images
// back into *s.
func (db *DB) PutSubject(s *Subject) error {
	if strings.TrimSpace(s.Name) == "" {
		return invalid("subject has no name")
	}
	if s.ID != "" {
		if err := checkID("subject", s.ID); err != nil {
			return err
		}
	}
	rec := *s
	err := db.update(func(b *buckets) error {
		if rec.ID == "" {
			rec.ID = newID()
		}
		var old Subject
		found, err := getJSON(b.subjects, "subject", rec.ID, &old)
		if err != nil {
			return err
		}
		rec.Images = old.Images
		if rec.Images == nil {
			rec.Images = []ImageRef{}
		}
		if rec.Created.IsZero() {
			rec.Created = old.Created
			if !found {
				rec.Created = now()
			}
		}
		if _, err := b.subjectImages.CreateBucketIfNotExists([]byte(rec.ID)); err != nil {
			return err
		}
		return putJSON(b.subjects, rec.ID, &rec)
	})
	if err != nil {
		return err
	}
	rec.Images = slices.Clone(rec.Images)
	*s = rec
	return nil
}

// Subject returns the subject with the given id, or an error wrapping
// ErrNotFound.
func (db *DB) Subject(id string) (Subject, error) {
	var s Subject
	err := db.view(func(b *buckets) error {
		var err error
		s, err = getSubject(b, id)
		return err
	})
	return s, err
}

// getSubject reads a subject inside a transaction.
func getSubject(b *buckets, id string) (Subject, error) {
	var s Subject
	found, err := getJSON(b.subjects, "subject", id, &s)
	if err == nil && !found {
		err = notFound("subject", id)
	}
	return s, err
}

// Subjects returns every subject, sorted by name (ignoring case), then by
// creation time, then by id. It reads no image bytes.
func (db *DB) Subjects() ([]Subject, error) {
	var out []Subject
	err := db.view(func(b *buckets) error {
		return eachJSON(b.subjects, "subject", func(_ string, s *Subject) error {
			out = append(out, *s)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y Subject) int {
		return cmp.Or(
			cmp.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name)),
			x.Created.Compare(y.Created),
			cmp.Compare(x.ID, y.ID),
		)
	})
	return out, nil
}

// DeleteSubject removes a subject and all its image bytes. Runs, gallery
// images and ratings that name the subject are kept (they are history); their
// SubjectID then names no subject. It returns an error wrapping ErrNotFound
// if there is no such subject.
func (db *DB) DeleteSubject(id string) error {
	return db.update(func(b *buckets) error {
		if _, err := getSubject(b, id); err != nil {
			return err
		}
		if err := b.subjects.Delete([]byte(id)); err != nil {
			return err
		}
		if b.subjectImages.Bucket([]byte(id)) == nil {
			return nil
		}
		return b.subjectImages.DeleteBucket([]byte(id))
	})
}

// AddSubjectImages stores images for the subject in one transaction. An
// image whose SHA-256 equals that of an image the subject already has, or of
// an earlier image of the same call, is not stored again and is counted in
// duplicates; the others are appended to Subject.Images and counted in
// added. An image without bytes fails the whole call with ErrInvalid. The
// store reads imgs only during the call; imgs must not change until it
// returns, and may be reused after.
func (db *DB) AddSubjectImages(subjectID string, imgs []Image) (added, duplicates int, err error) {
	for i, img := range imgs {
		if len(img.Data) == 0 {
			return 0, 0, invalid("image %d (%q) has no bytes", i, img.Name)
		}
	}
	err = db.update(func(b *buckets) error {
		added, duplicates = 0, 0
		s, err := getSubject(b, subjectID)
		if err != nil {
			return err
		}
		blobs, err := b.subjectImages.CreateBucketIfNotExists([]byte(subjectID))
		if err != nil {
			return err
		}
		have := make(map[string]bool, len(s.Images))
		for _, ref := range s.Images {
			have[ref.Hash] = true
		}
		t := now()
		for _, img := range imgs {
			h := hashOf(img.Data)
			if have[h] {
				duplicates++
				continue
			}
			have[h] = true
			// bbolt references img.Data until the commit, which happens
			// before AddSubjectImages returns.
			if err := blobs.Put([]byte(h), img.Data); err != nil {
				return err
			}
			s.Images = append(s.Images, ImageRef{Name: img.Name, Hash: h, Size: len(img.Data), Added: t})
			added++
		}
		return putJSON(b.subjects, subjectID, &s)
	})
	if err != nil {
		return 0, 0, err
	}
	return added, duplicates, nil
}

// SubjectImage returns the bytes of the subject's image with the given
// hash (as in ImageRef.Hash). The slice is a copy owned by the caller and
// stays valid after the transaction and after Close. It returns an error
// wrapping ErrNotFound if the subject has no such image.
func (db *DB) SubjectImage(subjectID, hash string) ([]byte, error) {
	var out []byte
	err := db.view(func(b *buckets) error {
		if blobs := b.subjectImages.Bucket([]byte(subjectID)); blobs != nil {
			if v := blobs.Get([]byte(hash)); v != nil {
				out = clone(v)
				return nil
			}
		}
		return notFound("subject image", subjectID+"/"+hash)
	})
	return out, err
}

// RemoveSubjectImage removes one image from a subject, record and bytes. It
// returns an error wrapping ErrNotFound if the subject has no such image.
func (db *DB) RemoveSubjectImage(subjectID, hash string) error {
	return db.update(func(b *buckets) error {
		s, err := getSubject(b, subjectID)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(s.Images, func(r ImageRef) bool { return r.Hash == hash })
		if i < 0 {
			return notFound("subject image", subjectID+"/"+hash)
		}
		s.Images = slices.Delete(s.Images, i, i+1)
		blobs := b.subjectImages.Bucket([]byte(subjectID))
		if blobs == nil {
			return corrupt("subject %q has no image bucket", subjectID)
		}
		if err := blobs.Delete([]byte(hash)); err != nil {
			return err
		}
		return putJSON(b.subjects, subjectID, &s)
	})
}
