package stack

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FreePorts returns n loopback ports free at the time of the call.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WaitTCP waits until addr accepts connections, for at most d.
func WaitTCP(ctx context.Context, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Bootstraps returns the function processes ("bootstrap") running under
// the given runtime emulator processes, searched among their descendants.
func Bootstraps(emulators ...int) []int {
	children, comm := processTree()
	var out []int
	queue := []int{}
	for _, e := range emulators {
		queue = append(queue, children[e]...)
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if comm[pid] == "bootstrap" {
			out = append(out, pid)
			continue
		}
		queue = append(queue, children[pid]...)
	}
	return out
}

// FunctionProcesses returns the bootstrap processes of a function under
// all of its emulators in this stack.
func (st *Stack) FunctionProcesses(logicalID string) []int {
	var emulators []int
	for name, pid := range st.PIDs {
		if name == logicalID || strings.HasPrefix(name, logicalID+"-") {
			emulators = append(emulators, pid)
		}
	}
	return Bootstraps(emulators...)
}

// VmHWM is a process's peak resident memory in kB (the runtime
// emulator's "Max Memory Used" is only the configured size).
func VmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			if f := strings.Fields(line); len(f) >= 2 {
				return strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// processTree reads /proc: children by parent, and each process's name.
func processTree() (map[int][]int, map[int]string) {
	children := map[int][]int{}
	comm := map[int]string{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; split after ')'.
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < 0 {
			continue
		}
		fields := strings.Fields(s[j+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
		comm[pid] = s[i+1 : j]
	}
	return children, comm
}

// RepoRoot is the directory holding template.yaml, from the working
// directory upwards: where the stack, the Makefile and the tests start.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "template.yaml")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", fmt.Errorf("template.yaml not found above the working directory")
		}
		d = p
	}
}
