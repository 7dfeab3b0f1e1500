"""Shared harness of the inputs' power-cut simulations (tools/powercut/file, tools/powercut/journald).

A follower child (the input on the seam, exactly as the agent runs it, printing `APPENDED n` after each commit)
reads what a writer thread produces into a queue, under the LD_PRELOAD shim of tools/powercut (shim.c: writes
to data.mdb pending until an fsync makes them durable; at a random durability point the pending writes are
kept, dropped or torn and the process is SIGKILLed). After each cut the unshimmed ferry-tools verifies and
exports the queue: no line may be stored twice. At the end a last run without the shim reads what is left,
and every line written must be stored exactly once. Each run starts from the directory the previous one left.
The writer writes lines `line-%06d ...`; they are found in the exported events' `message`.
"""
import argparse, os, random, re, shutil, signal, subprocess, sys, tempfile, threading

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
LINE = re.compile(rb'"message":"line-(\d+) ')


def arguments(description, lines_help):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, help="seed of the cut points and fates (default: random, printed)")
    parser.add_argument("--ferry-bin", help="directory with prebuilt ferry-tools and the follower (default: swift build -c release)")
    parser.add_argument("--lines", type=int, default=20000, help=lines_help)
    parser.add_argument("--max-point", type=int, default=60, help="the cut comes at a durability point drawn from 1..K")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args()


def binaries(args, follower_product, name):
    if args.ferry_bin:
        d = os.path.abspath(args.ferry_bin)
    else:
        for product in ("ferry-tools", follower_product):
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=root, check=True, stdout=sys.stderr)
        d = os.path.join(root, ".build/release")
    tools, follower = os.path.join(d, "ferry-tools"), os.path.join(d, follower_product)
    for path in (tools, follower):
        if not os.access(path, os.X_OK):
            sys.exit(f"{name}: no executable {path}")
    return tools, follower


def stored(tools, directory, export_path):
    """Line numbers in the queue, in order, from an unshimmed `ferry-tools export`; and problems."""
    problems = []
    v = subprocess.run([tools, "verify", "--data-dir", directory], capture_output=True, text=True)
    if v.returncode != 0:
        problems.append(f"verify exit {v.returncode}: {(v.stdout + v.stderr).strip()[-300:]}")
    e = subprocess.run([tools, "export", "--data-dir", directory, "-o", export_path], capture_output=True, text=True)
    if e.returncode != 0:
        return [], problems + [f"export exit {e.returncode}: {(e.stdout + e.stderr).strip()[-300:]}"]
    numbers = []
    with open(export_path, "rb") as f:
        for line in f:
            m = LINE.search(line)
            if m:
                numbers.append(int(m.group(1)))
            else:
                problems.append(f"an exported line is not a written line: {line[:100]!r}")
    os.remove(export_path)
    return numbers, problems


def simulate(name, args, follower_product, prepare, writer, follower_arguments):
    """`prepare(work)` makes the source's directory and returns it; `writer(source, lines, done)` writes the
    lines (a thread; sets `done` at the end); `follower_arguments(queue, source, seconds)` is the follower's argv."""
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    writer_error = []

    def write(source, lines, done):
        # Whatever happens to the writer, `done` is set, so that nothing below waits for it forever.
        try:
            writer(source, lines, done)
        except Exception as e:  # noqa: BLE001 -- reported as the run's failure below
            writer_error.append(repr(e))
        finally:
            done.set()

    tools, follower = binaries(args, follower_product, name)
    work = tempfile.mkdtemp(prefix=f"ferry-{name.replace('/', '-')}-")
    failed = False
    try:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            sys.exit(f"{name}: no C compiler (cc); install gcc")
        shim = os.path.join(work, "powercut-shim.so")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", shim, os.path.join(here, "shim.c"), "-ldl", "-lpthread"], check=True)
        source, queue = prepare(work), os.path.join(work, "queue")
        done = threading.Event()
        threading.Thread(target=write, args=(source, args.lines, done), daemon=True).start()
        rng = random.Random(seed)
        print(f"{args.runs} runs, seed {seed}, {args.lines} lines, cut at durability point 1..{args.max_point}")
        print(f"{'run':>4} {'point':>6} {'cut':>4} {'stored':>7} {'twice':>6}  problems")
        for run in range(1, args.runs + 1):
            point = rng.randint(1, args.max_point)
            report = os.path.join(work, f"cut-{run}.txt")
            env = dict(os.environ, LD_PRELOAD=shim, POWERCUT_AT=str(point), POWERCUT_SEED=str(rng.randrange(1 << 31)), POWERCUT_REPORT=report)
            try:
                p = subprocess.run([follower] + follower_arguments(queue, source, 5), env=env, capture_output=True, timeout=90)
            except subprocess.TimeoutExpired:
                print(f"{run:>4} {point:>6}  the follower ran past 90 s (it stops itself after 5 s): FAILED")
                failed = True
                sys.exit(1)  # the work directory is kept (finally)
            cut = p.returncode == -signal.SIGKILL
            numbers, problems = stored(tools, queue, os.path.join(work, "export.ndjson"))
            twice = len(numbers) - len(set(numbers))
            if p.returncode not in (0, -signal.SIGKILL):
                problems.append(f"follower exit {p.returncode}: {p.stderr.decode(errors='replace').strip()[-300:]}")
            print(f"{run:>4} {point:>6} {'yes' if cut else 'no':>4} {len(numbers):>7} {twice:>6}  {'; '.join(problems)}")
            failed = failed or twice > 0 or bool(problems)
        if not done.wait(600) or writer_error:
            print(f"{name}: the writer did not finish: {writer_error or 'still writing after 600 s'}")
            failed = True
            sys.exit(1)  # the work directory is kept (finally)
        # A last run without the shim until every line is stored (or it stops by itself after 60 s).
        before = len(stored(tools, queue, os.path.join(work, "export.ndjson"))[0])
        p = subprocess.Popen([follower] + follower_arguments(queue, source, 60), stdout=subprocess.PIPE)
        appended = 0
        for line in p.stdout:
            if line.startswith(b"APPENDED "):
                appended += int(line.split()[1])
                if before + appended >= args.lines:
                    break
        p.kill()
        p.wait()
        numbers, problems = stored(tools, queue, os.path.join(work, "export.ndjson"))
        missing = sorted(set(range(args.lines)) - set(numbers))
        twice = len(numbers) - len(set(numbers))
        print(f"final: {len(numbers)} of {args.lines} lines stored, {twice} twice, {len(missing)} missing {missing[:5]} {'; '.join(problems)}")
        failed = failed or twice > 0 or bool(missing) or bool(problems)
        print(f"{name}: " + ("FAILED" if failed else "every line stored exactly once"))
    finally:
        if args.keep or failed:
            print(f"{name}: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)
