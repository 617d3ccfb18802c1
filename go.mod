module github.com/instructbooth/instructbooth

go 1.26

require (
	github.com/google/uuid v1.6.0
	github.com/rajveermalviya/go-webgpu/wgpu v0.17.1
	github.com/x448/float16 v0.8.4
	go.etcd.io/bbolt v1.5.0
	gonum.org/v1/gonum v0.17.0
)

require golang.org/x/sys v0.45.0 // indirect
