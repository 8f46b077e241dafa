using System.Buffers;
using System.Text;
using System.Text.Json;
using Bastion.Configuration;
using Bastion.Observability;
using Bastion.Observability.LogFormats;

namespace Bastion.Tests.Observability;

/// <summary>
/// The hand-written JSON line against the <see cref="Utf8JsonWriter"/> it replaced: byte for byte the same on random
/// events (escapes, non-ASCII, lone surrogates, controls, nulls, odd timestamps and durations).
/// </summary>
public sealed class JsonLogFormatTests
{
    static readonly JsonWriterOptions Options = new()
    {
        SkipValidation = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The writer as it was before (the reference).</summary>
    static string Reference(AccessEvent e)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            Span<char> ts = stackalloc char[32];
            e.Ts.ToUniversalTime().TryFormat(ts, out int n, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
            w.WriteString("ts", ts[..n]);
            w.WriteString("event", e.Event);
            w.WriteString("id", e.Id);
            w.WriteString("conn", e.Conn);
            w.WriteString("listener", e.Listener);
            w.WriteString("type", e.Type);
            w.WriteString("client", e.Client);
            w.WriteString("user", e.User);
            w.WriteString("request", e.Request);
            w.WriteString("verdict", e.Verdict switch { Verdict.Allow => "allow", Verdict.Deny => "deny", _ => null });
            w.WriteString("rule", e.Rule);
            w.WriteString("reason", e.Reason);
            w.WriteNumber("status", e.Status);
            w.WriteString("upstream", e.Upstream);
            if (e.UpstreamMs is { } um) w.WriteNumber("upstream_ms", Math.Round(um, 3));
            if (e.Tls is not null) w.WriteString("tls", e.Tls);
            if (e.Sni is not null) w.WriteString("sni", e.Sni);
            w.WriteNumber("bytes_in", e.BytesIn);
            w.WriteNumber("bytes_out", e.BytesOut);
            w.WriteNumber("duration_ms", Math.Round(e.DurationMs, 3));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    static string Hand(JsonLogFormat f, AccessEvent e)
    {
        var buffer = new ArrayBufferWriter<byte>();
        f.Write(e, buffer);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    static readonly string[] Pieces =
    [
        "GET http://example.com/a?b=c", "", " ", "\"", "\\", "\t", "\n", "\r", "\0", "\x1f", "\x7f", "\u0080", "\u00a0", "é", "ü",
        "\u2028", "\u2029", "<script>", "&amp;", "'", "+", "`", "日本", "😀", "\ud800", "\udc00", "\ufffd", "\ufeff", "%41", "a@b", "{}", "[]",
    ];

    static string? RandomText(Random r)
    {
        if (r.Next(8) == 0) return null;
        var sb = new StringBuilder();
        int n = r.Next(5);
        for (int i = 0; i < n; i++) sb.Append(Pieces[r.Next(Pieces.Length)]);
        return sb.ToString();
    }

    static double RandomMillis(Random r) => r.Next(6) switch
    {
        0 => 0,
        1 => r.NextDouble(),
        2 => r.NextDouble() * 1000,
        3 => Math.Round(r.NextDouble() * 100, r.Next(5)),
        4 => r.Next(100000) / 1000.0 + 0.0005,
        _ => r.NextDouble() * 1e10,
    };

    [Fact]
    public void Random_events_are_written_byte_for_byte_as_Utf8JsonWriter_wrote_them()
    {
        var r = new Random(14);
        var f = new JsonLogFormat();
        var start = new DateTime(2026, 12, 31, 23, 59, 58, DateTimeKind.Utc);
        for (int i = 0; i < 20_000; i++)
        {
            var e = new AccessEvent
            {
                Ts = r.Next(10) == 0
                    ? new DateTime(r.NextInt64(DateTime.MinValue.Ticks, DateTime.MaxValue.Ticks), DateTimeKind.Utc)
                    : start.AddTicks(r.NextInt64(0, 3 * TimeSpan.TicksPerSecond)),
                Event = r.Next(3) == 0 ? "connection" : "request",
                Id = RandomText(r) ?? "x-1",
                Conn = RandomText(r),
                Listener = RandomText(r) ?? "l",
                Type = "http-proxy",
                Client = RandomText(r),
                User = RandomText(r),
                Request = RandomText(r),
                Verdict = r.Next(3) switch { 0 => null, 1 => Verdict.Allow, _ => Verdict.Deny },
                Rule = RandomText(r),
                Reason = RandomText(r),
                Status = r.Next(3) == 0 ? r.Next() - r.Next() : r.Next(100, 600),
                Upstream = RandomText(r),
                UpstreamMs = r.Next(3) == 0 ? null : RandomMillis(r),
                Tls = RandomText(r),
                Sni = RandomText(r),
                BytesIn = r.NextInt64(),
                BytesOut = r.Next(4) == 0 ? 0 : r.Next(),
                DurationMs = RandomMillis(r),
            };
            Assert.Equal(Reference(e), Hand(f, e));
        }
    }

    [Fact]
    public void A_local_timestamp_is_written_in_UTC_and_milliseconds_are_truncated()
    {
        var f = new JsonLogFormat();
        var e = new AccessEvent { Id = "a-1", Listener = "l", Type = "tcp", Ts = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc).AddTicks(9_999_999) };
        Assert.StartsWith("{\"ts\":\"2026-01-02T03:04:05.999Z\"", Hand(f, e));
        var local = new DateTime(2026, 6, 1, 12, 0, 0, DateTimeKind.Local);
        e.Ts = local;
        Assert.Equal(Reference(e), Hand(f, e));
    }
}
