package toyworld

import (
	"fmt"
	"math"
	"sync"
)

// Appearance features of the object, for the subject-fidelity score:
// the mean and the spread of its inner pixels' colours, how strongly the
// colour changes between vertical and between horizontal neighbours
// (stripes), and its normalised silhouette with inner marks. Continuous
// statistics rather than colour labels, so blur (which mixes stripes into
// an intermediate colour) moves the features gradually. Weights balance
// the groups.
const (
	meanWeight   = 4.0
	spreadWeight = 4.0
	stripeWeight = 4.0
	shapeWeight  = 0.35
)

// Features returns the object's appearance feature vector, or nil when
// the image shows no object. p must be the image a was computed from.
func (a *Analysis) Features(p *Pixels) []float64 {
	if a.Area == 0 {
		return nil
	}
	var mean, sq RGB
	n := 0
	var vEnergy, hEnergy float64
	var vPairs, hPairs int
	for k := range a.body {
		if !a.core(k) {
			continue
		}
		x, y := k%Grid, k/Grid
		c := p.at(x, y)
		for i := range mean {
			mean[i] += c[i]
			sq[i] += c[i] * c[i]
		}
		n++
		if a.core(k + Grid) {
			vEnergy += dist(c, p.at(x, y+1))
			vPairs++
		}
		if a.core(k + 1) {
			hEnergy += dist(c, p.at(x+1, y))
			hPairs++
		}
	}
	f := make([]float64, 0, 8+2*shapeCells*shapeCells)
	for i := range mean {
		m := 0.0
		if n > 0 {
			m = mean[i] / float64(n)
		}
		f = append(f, meanWeight*m)
	}
	for i := range sq {
		v := 0.0
		if n > 0 {
			m := mean[i] / float64(n)
			v = math.Sqrt(math.Max(0, sq[i]/float64(n)-m*m))
		}
		f = append(f, spreadWeight*v)
	}
	ratio := func(e float64, n int) float64 {
		if n == 0 {
			return 0
		}
		return e / float64(n)
	}
	f = append(f, stripeWeight*ratio(vEnergy, vPairs), stripeWeight*ratio(hEnergy, hPairs))
	for _, v := range a.silhouette() {
		f = append(f, shapeWeight*v)
	}
	return f
}

// featureMean is the mean feature vector over base-world scenes: the
// origin of the fixed feature space in which fidelity takes cosines.
var featureMean = sync.OnceValue(func() []float64 {
	var mean []float64
	n := 0
	for i := 0; i < 200; i++ {
		v, _ := RenderFloat(SampleScene(0x6d65616e, i), Grid)
		p, _ := PixelsFromFloat(v, Grid)
		f := Analyze(p).Features(p)
		if f == nil {
			continue
		}
		if mean == nil {
			mean = make([]float64, len(f))
		}
		for k, v := range f {
			mean[k] += v
		}
		n++
	}
	for k := range mean {
		mean[k] /= float64(n)
	}
	return mean
})

// cosine is the cosine similarity of a and b after subtracting the
// feature mean (0 when either is nil or zero).
func cosine(a, b []float64) float64 {
	if a == nil || b == nil {
		return 0
	}
	m := featureMean()
	var ab, aa, bb float64
	for k := range a {
		x, y := a[k]-m[k], b[k]-m[k]
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// SubjectRef holds the features of a subject's reference photos.
type SubjectRef struct {
	feats [][]float64
}

// NewSubjectRef reads the subject's reference photos. Every photo must
// show an object.
func NewSubjectRef(photos []*Pixels) (*SubjectRef, error) {
	if len(photos) == 0 {
		return nil, fmt.Errorf("toyworld: no subject photos")
	}
	r := &SubjectRef{}
	for i, p := range photos {
		f := Analyze(p).Features(p)
		if f == nil {
			return nil, fmt.Errorf("toyworld: subject photo %d shows no object", i)
		}
		r.feats = append(r.feats, f)
	}
	return r, nil
}

// Fidelity is the subject-fidelity score of an image, playing DINO's role:
// the mean cosine similarity, in the fixed feature space, between the
// image's object and each reference photo's object (in [-1, 1]; 0 when
// the image shows no object).
func (r *SubjectRef) Fidelity(p *Pixels) float64 {
	return r.FidelityOf(Analyze(p), p)
}

// FidelityOf is Fidelity for image p analysed as a.
func (r *SubjectRef) FidelityOf(a *Analysis, p *Pixels) float64 {
	f := a.Features(p)
	s := 0.0
	for _, g := range r.feats {
		s += cosine(f, g)
	}
	return s / float64(len(r.feats))
}
