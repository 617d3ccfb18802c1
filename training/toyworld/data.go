package toyworld

import (
	"context"
	"runtime"
	"sync"
)

// Batch is one training batch of the base world.
type Batch struct {
	Scenes   []Scene
	Captions []string  // "" for a dropped caption (classifier-free guidance)
	Images   []float32 // [N, 3, S, S] in [-1, 1]
	Size     int       // S
}

// captionSalt separates the caption draws from the scene draws.
const captionSalt = 0x63617074696f6e

// MakeBatch renders batch number step of size n at size x size pixels:
// scenes step*n .. step*n+n-1 of the base world under seed, each with a
// random caption (CaptionStyle varied per RandomCaption) that is dropped
// (replaced by "") with probability dropout. Rendering runs on every CPU.
// The same arguments always give the same batch.
func MakeBatch(seed uint64, step, n, size int, dropout float64) Batch {
	b := Batch{Scenes: make([]Scene, n), Captions: make([]string, n), Images: make([]float32, n*3*size*size), Size: size}
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < min(n, runtime.NumCPU()); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				idx := step*n + i
				s := SampleScene(seed, idx)
				r := NewRand(seed^captionSalt, uint64(idx))
				c := s.RandomCaption(r)
				if r.Float64() < dropout {
					c = ""
				}
				v, _ := RenderFloat(s, size)
				img := b.Images[i*3*size*size : (i+1)*3*size*size]
				for k, x := range v {
					img[k] = 2*x - 1
				}
				b.Scenes[i], b.Captions[i] = s, c
			}
		}()
	}
	wg.Wait()
	return b
}

// prefetch renders batches from step on in the background, two ahead,
// until ctx ends.
func prefetch(ctx context.Context, seed uint64, step, n, size int, dropout float64) <-chan Batch {
	out := make(chan Batch, 2)
	go func() {
		defer close(out)
		for s := step; ; s++ {
			b := MakeBatch(seed, s, n, size, dropout)
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
