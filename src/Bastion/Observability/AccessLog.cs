using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using Bastion.Configuration;

namespace Bastion.Observability;

/// <summary>One access-log line (SPEC 5): a request/command decision, or a closed connection.</summary>
public sealed record AccessEvent
{
    public DateTime Ts { get; init; } = DateTime.UtcNow;
    /// <summary>"request" for a decision, "connection" for a closed connection.</summary>
    public string Event { get; init; } = "request";
    public required string Id { get; init; }
    /// <summary>The connection the event belongs to (not written yet: the line format stays as it is).</summary>
    public string? Conn { get; init; }
    public required string Listener { get; init; }
    public required string Type { get; init; }
    public string? Client { get; init; }
    public string? User { get; init; }
    public string? Request { get; init; }
    public Verdict? Verdict { get; init; }
    public string? Rule { get; init; }
    public string? Reason { get; init; }
    /// <summary>Where it went and over what TLS (not written yet).</summary>
    public string? Upstream { get; init; }
    /// <summary>The TLS state worth logging; for CONNECT tunnels and requests inside them: "inspected", "spliced" or "refused".</summary>
    public string? Tls { get; init; }
    public int Status { get; init; }
    public long BytesIn { get; init; }
    public long BytesOut { get; init; }
    public double DurationMs { get; init; }
    /// <summary>The TLS server name the client sent (inspected or peeked tunnels).</summary>
    public string? Sni { get; init; }
}

/// <summary>
/// JSON lines to stdout or a file, written by one background task. Traffic never waits for the log: events go
/// through a bounded queue, and when the writer falls behind (or its disk fails) events are dropped and counted.
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    // Wait mode with TryWrite never waits: it returns false when full, so the drop is seen and counted
    // (DropWrite would make TryWrite return true and lose the event silently).
    readonly Channel<AccessEvent> _queue = Channel.CreateBounded<AccessEvent>(
        new BoundedChannelOptions(65_536) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    readonly Stream _out;
    readonly bool _ownsStream;
    readonly Task _writer;
    long _dropped;
    long _written;
    int _pending; // events in the buffer, counted as written or dropped on flush

    public string Target { get; }
    public long Dropped => Interlocked.Read(ref _dropped);
    /// <summary>Events written to the target.</summary>
    public long Written => Interlocked.Read(ref _written);


    public AccessLog(string target)
    {
        Target = target;
        if (target is "stdout" or "-")
        {
            _out = Console.OpenStandardOutput();
            _ownsStream = false;
        }
        else if (target is "off" or "none")
        {
            _out = Stream.Null;
            _off = true;
        }
        else
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(target));
            if (dir is not null) Directory.CreateDirectory(dir);
            // Unbuffered: lines are batched above, and a failing disk then fails the write we count, not a later dispose.
            _out = new FileStream(target, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
            _ownsStream = true;
        }
        _writer = Task.Run(WriteLoop);
    }

    readonly bool _off;

    public void Write(AccessEvent e)
    {
        // `access: off` costs nothing per request: no queue, no serialisation.
        if (_off) return;
        if (!_queue.Writer.TryWrite(e)) Interlocked.Increment(ref _dropped);
    }

    async Task WriteLoop()
    {
        var buffer = new ArrayBufferWriter<byte>(16 * 1024);
        // Relaxed escaping: a log line is not HTML, and "RCPT TO:<a@b>" should read as written.
        using var json = new Utf8JsonWriter(buffer, new JsonWriterOptions
        {
            SkipValidation = true,
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var e))
            {
                json.Reset(buffer);
                Serialize(json, e);
                json.Flush();
                buffer.Write("\n"u8);
                _pending++;
                if (buffer.WrittenCount > 32 * 1024) await Flush(buffer, false).ConfigureAwait(false);
            }
            await Flush(buffer, true).ConfigureAwait(false);
        }
        await Flush(buffer, true).ConfigureAwait(false);
    }

    async Task Flush(ArrayBufferWriter<byte> buffer, bool flushStream)
    {
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

    static void Serialize(Utf8JsonWriter w, AccessEvent e)
    {
        w.WriteStartObject();
        Span<char> ts = stackalloc char[32];
        e.Ts.ToUniversalTime().TryFormat(ts, out int n, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        w.WriteString("ts", ts[..n]);
        w.WriteString("event", e.Event);
        w.WriteString("id", e.Id);
        if (e.Conn is not null && e.Conn != e.Id) w.WriteString("conn", e.Conn);
        w.WriteString("listener", e.Listener);
        w.WriteString("type", e.Type);
        w.WriteString("client", e.Client);
        w.WriteString("user", e.User);
        w.WriteString("request", e.Request);
        w.WriteString("verdict", e.Verdict switch { Verdict.Allow => "allow", Verdict.Deny => "deny", _ => null });
        w.WriteString("rule", e.Rule);
        w.WriteString("reason", e.Reason);
        w.WriteNumber("status", e.Status);
        if (e.Upstream is not null) w.WriteString("upstream", e.Upstream);
        if (e.Tls is not null) w.WriteString("tls", e.Tls);
        if (e.Sni is not null) w.WriteString("sni", e.Sni);
        w.WriteNumber("bytes_in", e.BytesIn);
        w.WriteNumber("bytes_out", e.BytesOut);
        w.WriteNumber("duration_ms", Math.Round(e.DurationMs, 3));
        w.WriteEndObject();
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        try { await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (TimeoutException) { }
        if (!_ownsStream) return;
        try { await _out.DisposeAsync().ConfigureAwait(false); }
        catch (IOException) { /* the disk failed; lines were already counted as dropped */ }
    }
}
