package store

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// BaseModel is a Stable Diffusion checkpoint on disk that runs start from.
// The store keeps only where it is and what it is: the weights are never
// copied into the database.
type BaseModel struct {
	ID   string `json:"id"`   // UUID
	Name string `json:"name"` // shown to the user; required
	Path string `json:"path"` // file or directory on disk; required
	Hash string `json:"hash"` // lower-case hex SHA-256 of the file, as computed by the caller
	Size int64  `json:"size"` // bytes on disk, as reported by the caller

	// Arch is the architecture detected from the weights (for example
	// "sd15" or "sd21"); the store does not interpret it.
	Arch  string    `json:"arch"`
	Added time.Time `json:"added"`
}

// PutBaseModel creates or replaces a base model record. If m.ID is empty a
// new UUID is assigned; a zero m.Added becomes the current time for a new
// record and is kept for an existing one. On success the stored ID and
// Added are written back into *m.
func (db *DB) PutBaseModel(m *BaseModel) error {
	switch {
	case strings.TrimSpace(m.Name) == "":
		return invalid("base model has no name")
	case m.Path == "":
		return invalid("base model %q has no path", m.Name)
	case m.ID != "":
		if err := checkID("base model", m.ID); err != nil {
			return err
		}
	}
	rec := *m
	err := db.update(func(b *buckets) error {
		if rec.ID == "" {
			rec.ID = newID()
		}
		if rec.Added.IsZero() {
			var old BaseModel
			found, err := getJSON(b.models, "base model", rec.ID, &old)
			if err != nil {
				return err
			}
			rec.Added = old.Added
			if !found {
				rec.Added = now()
			}
		}
		return putJSON(b.models, rec.ID, &rec)
	})
	if err == nil {
		*m = rec
	}
	return err
}

// BaseModel returns the base model with the given id, or an error wrapping
// ErrNotFound.
func (db *DB) BaseModel(id string) (BaseModel, error) {
	var m BaseModel
	err := db.view(func(b *buckets) error {
		found, err := getJSON(b.models, "base model", id, &m)
		if err == nil && !found {
			err = notFound("base model", id)
		}
		return err
	})
	return m, err
}

// BaseModels returns every base model sorted by name (ignoring case), then
// by time added, then by id.
func (db *DB) BaseModels() ([]BaseModel, error) {
	var out []BaseModel
	err := db.view(func(b *buckets) error {
		return eachJSON(b.models, "base model", func(_ string, m *BaseModel) error {
			out = append(out, *m)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y BaseModel) int {
		return cmp.Or(
			cmp.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name)),
			x.Added.Compare(y.Added),
			cmp.Compare(x.ID, y.ID),
		)
	})
	return out, nil
}

// DeleteBaseModel removes a base model record; the file on disk is not
// touched. Runs that name the model keep its id. It returns an error
// wrapping ErrNotFound if there is no such record.
func (db *DB) DeleteBaseModel(id string) error {
	return db.update(func(b *buckets) error {
		if b.models.Get([]byte(id)) == nil {
			return notFound("base model", id)
		}
		return b.models.Delete([]byte(id))
	})
}
