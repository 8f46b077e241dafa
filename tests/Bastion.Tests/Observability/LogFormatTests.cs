using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using Bastion.Configuration;
using Bastion.Observability;
using Bastion.Observability.LogFormats;
using Bastion.Tests.Infrastructure;
using Bastion.Tests.Unit;

namespace Bastion.Tests.Observability;

/// <summary>The line formats on crafted events: exact fields, escaping of what clients send, template and config errors.</summary>
public sealed class LogFormatTests
{
    static readonly DateTime T = new(2026, 12, 3, 13, 55, 36, 123, DateTimeKind.Utc);

    static AccessEvent Get(Action<AccessEventBuilder>? change = null)
    {
        var b = new AccessEventBuilder();
        change?.Invoke(b);
        return b.Build();
    }

    /// <summary>A mutable stand-in for the init-only record, so that cases read as "the usual, except...".</summary>
    public sealed class AccessEventBuilder
    {
        public string Event = "request", Type = "http-proxy";
        public string? Client = "10.1.2.3:40100", User = "alice", Request = "GET http://example.com/a?b=c", Upstream = "93.184.216.34:80";
        public string? ContentType = "text/html; charset=utf-8", Protocol = "HTTP/1.1", Referer = "http://intranet.example/", UserAgent = "curl/8.5.0";
        public Verdict? Verdict = Bastion.Configuration.Verdict.Allow;
        public int Status = 200;
        public double DurationMs = 12.407;

        public AccessEvent Build() => new()
        {
            Ts = T,
            Event = Event,
            Id = "abc123-2",
            Conn = "abc123-1",
            Listener = "office",
            Type = Type,
            Client = Client,
            User = User,
            Request = Request,
            Verdict = Verdict,
            Rule = "web",
            Status = Status,
            Upstream = Upstream,
            BytesIn = 112,
            BytesOut = 1591,
            DurationMs = DurationMs,
            ContentType = ContentType,
            Protocol = Protocol,
            Referer = Referer,
            UserAgent = UserAgent,
            UpstreamMs = 8.25,
        };
    }

    static string Line(string format, AccessEvent e)
    {
        var f = AccessLogFormat.Parse(format, out var error) ?? throw new InvalidOperationException(error);
        var buffer = new ArrayBufferWriter<byte>();
        f.Write(e, buffer);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    [Fact]
    public void Squid_native_fields_in_squids_order()
    {
        Assert.Equal("1796306136.123     12 10.1.2.3 TCP_MISS/200 1591 GET http://example.com/a?b=c alice HIER_DIRECT/93.184.216.34 text/html",
            Line("squid", Get()));
        Assert.Equal("1796306136.123 1234567 ::1 TCP_DENIED/403 1591 CONNECT example.org:22 - HIER_NONE/- -",
            Line("squid", Get(b => { b.Client = "[::1]:5000"; b.User = null; b.Request = "CONNECT example.org:22"; b.Upstream = null; b.ContentType = null; b.Verdict = Verdict.Deny; b.Status = 403; b.DurationMs = 1234567.9; })));
        // socks5/tcp: a tunnel; the reverse proxy's upstream URL gives its host; a client that went away.
        Assert.Contains(" TCP_TUNNEL/000 1591 CONNECT db.example:5432 ", Line("squid", Get(b => { b.Type = "socks5"; b.Request = "db.example:5432"; b.Status = 0; })));
        Assert.Contains(" HIER_DIRECT/10.0.0.5 ", Line("squid", Get(b => { b.Type = "http-reverse"; b.Upstream = "http://10.0.0.5:8080"; })));
        Assert.Contains(" TCP_MISS_ABORTED/499 ", Line("squid", Get(b => b.Status = 499)));
        Assert.Contains(" NONE_NONE/000 1591 NONE - ", Line("squid", Get(b => { b.Event = "connection"; b.Request = null; b.Verdict = null; b.Upstream = null; b.Status = 0; })));
        // One field per value, whatever the client sent.
        Assert.Contains(" GET http://example.com/a%20b%0A ", Line("squid", Get(b => b.Request = "GET http://example.com/a b\n")));
    }

    [Fact]
    public void Combined_is_apaches_line_with_its_escaping()
    {
        var line = Line("combined", Get());
        var m = Regex.Match(line, @"^10\.1\.2\.3 - alice \[(\d\d/Dec/2026:\d\d:\d\d:\d\d [+-]\d{4})\] ""GET http://example\.com/a\?b=c HTTP/1\.1"" 200 1591 ""http://intranet\.example/"" ""curl/8\.5\.0""$");
        Assert.True(m.Success, line);
        // %t is the start: 12.407 ms before the end, in local time.
        var start = (T - TimeSpan.FromMilliseconds(12.407)).ToLocalTime();
        Assert.StartsWith(start.ToString("dd/MMM/yyyy:HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture), m.Groups[1].Value);

        // A header cannot end its field or start a line; the reverse proxy's request line is origin-form.
        line = Line("combined", Get(b => { b.UserAgent = "evil\" \"x\n127.0.0.1 - - [x] \"GET /"; b.Referer = null; b.Type = "http-reverse"; b.Request = "GET https://app.example/p?q=1"; b.Protocol = "HTTP/2"; b.Status = 0; }));
        Assert.EndsWith("\"GET /p?q=1 HTTP/2\" - 1591 \"-\" \"evil\\\" \\\"x\\x0a127.0.0.1 - - [x] \\\"GET /\"", line);
        Assert.DoesNotContain('\n', line);
    }

    [Fact]
    public void Templates_write_named_fields_and_refuse_unknown_ones()
    {
        Assert.Equal("alice 10.1.2.3 GET http://example.com/a?b=c {200} 8.25 - -",
            Line("{user} {client_ip} {method} {target} {{{status}}} {upstream_ms} {tls} {reason}", Get()));
        Assert.Equal("1796306136.123 office/abc123-1 text/html; charset=utf-8", Line("{ts_epoch} {listener}/{conn} {content_type}", Get()));
        Assert.Null(AccessLogFormat.Parse("{ts} {clinet}", out var error));
        Assert.Contains("unknown field '{clinet}' (did you mean 'client'?)", error);
        Assert.Null(AccessLogFormat.Parse("{ts", out error));
        Assert.Contains("is not closed", error);
        Assert.Null(AccessLogFormat.Parse("sqiud", out error));
        Assert.Contains("(did you mean 'squid'?)", error);
    }

    [Fact]
    public void Logging_section_errors_point_at_their_value()
    {
        var f = new ConfigFixture();
        var (_, errors) = f.Build("""
            logging:
              access: syslog
              format: "{ts} {bytes}"
              connections: maybe
              syslog: { address: "udp://127.0.0.1:0", facility: locl0, app_name: "has space" }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0 }
            """);
        ConfigFixture.HasError(errors, f.Path, 3, 11, "unknown field '{bytes}'");
        ConfigFixture.HasError(errors, f.Path, 4, 16, "logging.connections must be true or false");
        ConfigFixture.HasError(errors, f.Path, 5, 22, "'127.0.0.1:0' is not host:port (port 1-65535)");
        ConfigFixture.HasError(errors, f.Path, 5, 53, "logging.syslog.facility 'locl0' is not a syslog facility (did you mean 'local0'?)");
        ConfigFixture.HasError(errors, f.Path, 5, 70, "app_name must be 1-48 printable characters");
    }

    [Fact]
    public async Task Http_connection_lines_are_opt_in_but_tunnels_and_refusals_always_written()
    {
        var dir = Scratch.NewDir("optin");
        async Task<string[]> Written(bool connections)
        {
            var path = Path.Combine(dir, $"{connections}.log");
            var log = new AccessLog(path, LoggingConfig.Default with { Connections = connections });
            log.Write(Get());                                                                                      // a request
            log.Write(Get(b => { b.Event = "connection"; b.Verdict = null; b.Upstream = null; b.Request = "3 requests"; }));  // its connection
            log.Write(Get(b => { b.Event = "connection"; b.Verdict = null; b.Request = "CONNECT h:443"; }));       // a tunnel's totals
            log.Write(Get(b => { b.Event = "connection"; b.Verdict = Verdict.Deny; b.Upstream = null; }));         // refused
            log.Write(Get(b => { b.Event = "connection"; b.Verdict = null; b.Type = "tcp"; b.Upstream = null; })); // tcp: always
            await log.DisposeAsync();
            return File.ReadAllLines(path);
        }
        var off = await Written(false);
        Assert.Equal(4, off.Length);
        Assert.DoesNotContain(off, l => l.Contains("3 requests", StringComparison.Ordinal));
        Assert.Equal(5, (await Written(true)).Length);
    }
}
