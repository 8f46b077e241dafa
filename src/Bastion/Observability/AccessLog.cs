using System.Buffers;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Bastion.Configuration;
using Bastion.Observability.LogFormats;
using Bastion.Observability.Syslog;

namespace Bastion.Observability;

/// <summary>One access-log line (SPEC 5): a request/command decision, or a closed connection.</summary>
public sealed record AccessEvent
{
    public DateTime Ts { get; set; } = DateTime.UtcNow;
    /// <summary>"request" for a decision, "connection" for a closed connection.</summary>
    public string Event { get; set; } = "request";
    public string Id { get => _id ??= Gateway.Ids.Of(IdNumber); set => _id = value; }
    string? _id;
    /// <summary>The id as its number, when the event was made without its text (<see cref="IdText"/> is then null).</summary>
    internal long IdNumber { get; private set; }
    /// <summary>The id's text if it has been made.</summary>
    internal string? IdText => _id;
    /// <summary>The connection the event belongs to (a connection line's own id).</summary>
    public string? Conn { get; set; }
    public required string Listener { get; set; }
    public required string Type { get; set; }
    public string? Client { get; set; }
    public string? User { get; set; }
    public string? Request { get; set; }
    public Verdict? Verdict { get; set; }
    public string? Rule { get; set; }
    public string? Reason { get; set; }
    /// <summary>The upstream that served it: host:port or the target's URL.</summary>
    public string? Upstream { get; set; }
    /// <summary>The TLS state worth logging; for CONNECT tunnels and requests inside them: "inspected", "spliced" or "refused".</summary>
    public string? Tls { get; set; }
    public int Status { get; set; }
    public long BytesIn { get; set; }
    public long BytesOut { get; set; }
    public double DurationMs { get; set; }
    /// <summary>The TLS server name the client sent (inspected or peeked tunnels).</summary>
    public string? Sni { get; set; }
    /// <summary>Milliseconds from sending upstream to the upstream's answer (response head), when it went upstream.</summary>
    public double? UpstreamMs { get; set; }
    /// <summary>HTTP only, for the combined and template formats (not in the JSON line): the request's protocol
    /// (HTTP/1.1, HTTP/2), its Referer and User-Agent, the response's media type.</summary>
    public string? Protocol { get; set; }
    public string? Referer { get; set; }
    public string? UserAgent { get; set; }
    public string? ContentType { get; set; }

    /// <summary>
    /// Taken from <see cref="Rent"/>: the log writer gives it back once the line is written. Whoever keeps an event
    /// beyond that (the dashboard's recent denials) clears this first.
    /// </summary>
    internal bool Pooled { get; set; }

    // Events of HTTP requests are reused: a new record per request was a third of what a request allocated.
    static readonly Stack<AccessEvent> Pool = new();
    const int PoolMax = 8192;

    /// <summary>A cleared event to fill in (returned to the pool by the log writer).</summary>
    internal static AccessEvent Rent(string? id, long idNumber, string listener, string type)
    {
        AccessEvent? e = null;
        lock (Pool)
        {
            if (Pool.Count > 0) e = Pool.Pop();
        }
        e ??= new AccessEvent { Listener = listener, Type = type };
        e._id = id;
        e.IdNumber = idNumber;
        e.Listener = listener;
        e.Type = type;
        e.Ts = DateTime.UtcNow;
        e.Pooled = true;
        return e;
    }

    /// <summary>Back to the pool, if it came from there and nobody kept it.</summary>
    internal static void Return(AccessEvent e)
    {
        if (!e.Pooled) return;
        e.Pooled = false;
        e.Event = "request";
        e.Conn = e.Client = e.User = e.Request = e.Rule = e.Reason = e.Upstream = e.Tls = e.Sni = null;
        e.Protocol = e.Referer = e.UserAgent = e.ContentType = null;
        e.Verdict = null;
        e.Status = 0;
        e.BytesIn = e.BytesOut = 0;
        e.DurationMs = 0;
        e.UpstreamMs = null;
        lock (Pool)
        {
            if (Pool.Count < PoolMax) Pool.Push(e);
        }
    }
}

/// <summary>
/// Access-log lines to stdout, a file or syslog, in the configured format (<see cref="AccessLogFormat"/>), written by
/// one background task. Traffic never waits for the log: events go through a bounded queue, and when the writer falls
/// behind (or its disk or syslog daemon fails) events are dropped and counted.
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    // Wait mode with TryWrite never waits: it returns false when full, so the drop is seen and counted
    // (DropWrite would make TryWrite return true and lose the event silently).
    readonly Channel<AccessEvent> _queue = Channel.CreateBounded<AccessEvent>(
        new BoundedChannelOptions(65_536) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    readonly Stream _out = Stream.Null;
    readonly bool _ownsStream;
    readonly SyslogSender? _syslog;
    readonly AccessLogFormat _format;
    readonly bool _off;
    readonly Task _writer;
    long _dropped;
    long _written;
    int _pending; // events in the buffer, counted as written or dropped on flush

    /// <summary>stdout, off, syslog or the file's full path.</summary>
    public string Target { get; }
    /// <summary>The `logging:` section it was opened with (format, connections, syslog).</summary>
    public LoggingConfig Options { get; }
    public long Dropped => Interlocked.Read(ref _dropped);
    /// <summary>Events written to the target.</summary>
    public long Written => Interlocked.Read(ref _written);

    public AccessLog(string target) : this(target, LoggingConfig.Default) { }

    /// <summary>Opens the target; throws (IOException, UnauthorizedAccessException, SocketException) when it cannot be.</summary>
    public AccessLog(string target, LoggingConfig options)
    {
        Target = target;
        Options = options;
        _format = AccessLogFormat.Parse(options.Format, out var error) ?? throw new ArgumentException(error);
        if (target is "stdout" or "-") _out = Console.OpenStandardOutput();
        else if (target is "off" or "none") _off = true;
        else if (target is "syslog") _syslog = new SyslogSender(options.Syslog);
        else
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(target));
            if (dir is not null) Directory.CreateDirectory(dir);
            // Unbuffered: lines are batched above, and a failing disk then fails the write we count, not a later dispose.
            _out = AppendFile.Open(target);
            _ownsStream = true;
        }
        _writer = Task.Run(WriteLoop);
    }

    public void Write(AccessEvent e)
    {
        // `access: off` costs nothing per request: no queue, no serialisation.
        if (_off)
        {
            AccessEvent.Return(e);
            return;
        }
        // One line per HTTP request is what people read; the HTTP connection's own line is opt-in. A refused
        // connection (a verdict) is a decision, and a CONNECT tunnel's totals are on its connection line (the one that
        // names an upstream): both always.
        if (!Options.Connections && e.Event == "connection" && e.Verdict is null && e.Upstream is null
            && e.Type is "http-proxy" or "http-reverse")
        {
            AccessEvent.Return(e);
            return;
        }
        if (_queue.Writer.TryWrite(e)) return;
        Interlocked.Increment(ref _dropped);
        AccessEvent.Return(e);
    }

    async Task WriteLoop()
    {
        var buffer = new ArrayBufferWriter<byte>(16 * 1024);
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var e))
            {
                if (_syslog is not null)
                {
                    // One message per event: header, then the line in the configured format.
                    buffer.ResetWrittenCount();
                    _syslog.WriteHeader(e, buffer);
                    _format.Write(e, buffer);
                    AccessEvent.Return(e);
                    if (await _syslog.SendAsync(buffer.WrittenMemory).ConfigureAwait(false)) Interlocked.Increment(ref _written);
                    else Interlocked.Increment(ref _dropped);
                    continue;
                }
                _format.Write(e, buffer);
                AccessEvent.Return(e);
                buffer.Write("\n"u8);
                _pending++;
                if (buffer.WrittenCount > 64 * 1024) await Flush(buffer, false).ConfigureAwait(false);
            }
            await Flush(buffer, true).ConfigureAwait(false);
            // Let lines gather before looking again: under load one write (and one wake-up of this task, of the
            // file's watchers) per period instead of one per request; an idle log waits in WaitToReadAsync as before.
            if (_syslog is null) await Task.Delay(BatchMs).ConfigureAwait(false);
        }
        await Flush(buffer, true).ConfigureAwait(false);
    }

    /// <summary>How long lines gather between writes at most (a line is on disk within about this much).</summary>
    const int BatchMs = 20;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask Flush(ArrayBufferWriter<byte> buffer, bool flushStream)
    {
        if (_syslog is not null) { buffer.ResetWrittenCount(); return; }
        if (buffer.WrittenCount == 0) return;
        try
        {
            await _out.WriteAsync(buffer.WrittenMemory).ConfigureAwait(false);
            if (flushStream) await _out.FlushAsync().ConfigureAwait(false);
            Interlocked.Add(ref _written, _pending);
        }
        catch (Exception)
        {
            Interlocked.Add(ref _dropped, _pending);
        }
        _pending = 0;
        buffer.ResetWrittenCount();
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        try { await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (TimeoutException) { }
        if (_syslog is not null) await _syslog.DisposeAsync().ConfigureAwait(false);
        if (!_ownsStream) return;
        try { await _out.DisposeAsync().ConfigureAwait(false); }
        catch (IOException) { /* the disk failed; lines were already counted as dropped */ }
    }
}
