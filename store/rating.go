package store

import (
	"cmp"
	"slices"
	"time"
)

// Choice is the user's answer to "which image is better?".
type Choice string

const (
	ChoiceA   Choice = "A"   // image A is better
	ChoiceB   Choice = "B"   // image B is better
	ChoiceTie Choice = "tie" // neither
)

// Valid reports whether c is one of the choices above.
func (c Choice) Valid() bool { return c == ChoiceA || c == ChoiceB || c == ChoiceTie }

// Rating is one pairwise human judgment between two gallery images made
// from the same prompt by two runs (before and after alignment, say).
type Rating struct {
	ID     string    `json:"id"` // UUID
	Prompt string    `json:"prompt"`
	ImageA string    `json:"image_a"` // gallery image ids
	ImageB string    `json:"image_b"`
	RunA   string    `json:"run_a"` // the runs that made them
	RunB   string    `json:"run_b"`
	Choice Choice    `json:"choice"`
	Time   time.Time `json:"time"`
}

// PutRating creates or replaces a rating. Both image ids and a valid Choice
// are required. If r.ID is empty a new UUID is assigned; a zero r.Time
// becomes the current time. On success the stored ID and Time are written
// back into *r. The images and runs need not exist any more: ratings are
// history.
func (db *DB) PutRating(r *Rating) error {
	rec := *r
	switch {
	case !rec.Choice.Valid():
		return invalid("rating choice %q", rec.Choice)
	case rec.ImageA == "" || rec.ImageB == "":
		return invalid("rating without both images")
	case rec.ID == "":
		rec.ID = newID()
	default:
		if err := checkID("rating", rec.ID); err != nil {
			return err
		}
	}
	if rec.Time.IsZero() {
		rec.Time = now()
	}
	err := db.update(func(b *buckets) error { return putJSON(b.ratings, rec.ID, &rec) })
	if err == nil {
		*r = rec
	}
	return err
}

// Ratings returns every rating, oldest first (by Time, then id).
func (db *DB) Ratings() ([]Rating, error) {
	var out []Rating
	err := db.view(func(b *buckets) error {
		return eachJSON(b.ratings, "rating", func(_ string, r *Rating) error {
			out = append(out, *r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y Rating) int {
		return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.ID, y.ID))
	})
	return out, nil
}

// PreferenceRate returns how often the images of runA were preferred over
// those of runB, over the n ratings that compare the two runs (in either
// position): rate = (wins + ties/2) / n. With n == 0 it returns 0, 0, nil.
func (db *DB) PreferenceRate(runA, runB string) (rate float64, n int, err error) {
	rs, err := db.Ratings()
	if err != nil {
		return 0, 0, err
	}
	var score float64
	for _, r := range rs {
		var winner Choice
		switch {
		case r.RunA == runA && r.RunB == runB:
			winner = ChoiceA
		case r.RunA == runB && r.RunB == runA:
			winner = ChoiceB
		default:
			continue
		}
		n++
		switch r.Choice {
		case winner:
			score++
		case ChoiceTie:
			score += 0.5
		}
	}
	if n == 0 {
		return 0, 0, nil
	}
	return score / float64(n), n, nil
}
