using System.Net.Security;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// The smtp listener (SPEC 3, smtp): accepts through the shared admission (<see cref="StreamListener"/>) and runs
/// one <see cref="SmtpSession"/> per client. Holds what sessions share and what is costly to make: the STARTTLS
/// certificate, the upstream targets and the round-robin position, each kept until a reload changes its config.
/// </summary>
public sealed class SmtpListener(ListenerContext ctx) : StreamListener(ctx)
{
    /// <summary>What an smtp listener without an `smtp:` section gets.</summary>
    public static readonly SmtpConfig DefaultConfig = new(null, [], null, "opportunistic", 100, default);

    protected override Task HandleAsync(ClientConnection conn) => new SmtpSession(this, Ctx, conn).RunAsync();

    /// <summary>
    /// Message data goes to the server in sends of about this size (the upstream's output segments; flushed when half
    /// full), not one per 16 KiB read. The client's pipe keeps the transport's 16 KiB reads: a larger read buffer,
    /// held by every session waiting for a command, cost more per 10 KiB message than it saved per 1 MiB one.
    /// </summary>
    public const int MessageBufferSize = 64 * 1024;

    /// <summary>The gateway's name: the banner's first word, or the machine's name.</summary>
    public string HostName(SmtpConfig c)
    {
        var b = c.Banner;
        if (string.IsNullOrWhiteSpace(b)) return Environment.MachineName.ToLowerInvariant();
        int sp = b.IndexOf(' ');
        return sp < 0 ? b : b[..sp];
    }

    /// <summary>The greeting's text after "220 ": the configured banner, or "NAME ESMTP".</summary>
    public string Banner(SmtpConfig c) => string.IsNullOrWhiteSpace(c.Banner) ? $"{HostName(c)} ESMTP" : c.Banner!;

    public IReadOnlyCollection<string> AllowedExtensions(SmtpConfig c) => c.ExtensionsGiven ? c.Extensions : Extensions.Default;

    /// <summary>The gateway's name and the fixed replies that carry it, made once per configuration, not per session.</summary>
    public sealed record Names(SmtpConfig Config, string Host, string Greeting, string Closing);
    Names? _names;

    public Names NamesFor(SmtpConfig c)
    {
        var cached = Volatile.Read(ref _names);
        if (cached is not null && ReferenceEquals(cached.Config, c)) return cached;
        var host = HostName(c);
        var names = new Names(c, host, $"220 {Banner(c)}", $"221 2.0.0 {host} closing connection");
        Volatile.Write(ref _names, names);
        return names;
    }

    sealed record CertCache(SmtpConfig Config, SslStreamCertificateContext Cert);
    sealed record TargetCache(ListenerConfig Config, IReadOnlyList<HostPort> Targets);
    CertCache? _cert;

    /// <summary>The STARTTLS certificate, loaded once per configuration; null when `smtp.tls` is not set.</summary>
    public SslStreamCertificateContext? ServerCertificate(BastionConfig root, SmtpConfig c)
    {
        if (c.Tls is null) return null;
        var cached = Volatile.Read(ref _cert);
        if (cached is not null && ReferenceEquals(cached.Config, c)) return cached.Cert;
        var certs = new HttpReverse.ServerCertificates(root, [c.Tls]);
        var ctx = certs.Select(null);
        Volatile.Write(ref _cert, new CertCache(c, ctx));
        return ctx;
    }

    TargetCache? _targets;
    int _next = -1;

    /// <summary>`upstream:` as targets: one host:port, or every target of an `upstreams:` group, in order.</summary>
    public IReadOnlyList<HostPort> Targets(BastionConfig root, ListenerConfig l)
    {
        var cached = Volatile.Read(ref _targets);
        if (cached is not null && ReferenceEquals(cached.Config, l)) return cached.Targets;
        var list = ResolveTargets(root, l);
        Volatile.Write(ref _targets, new TargetCache(l, list));
        return list;
    }

    public static IReadOnlyList<HostPort> ResolveTargets(BastionConfig root, ListenerConfig l)
    {
        if (l.Upstream is null) return [];
        if (root.Upstreams.TryGetValue(l.Upstream, out var group))
            return [.. group.Targets.Select(ParseTarget).OfType<HostPort>()];
        return ParseTarget(l.Upstream) is { } one ? [one] : [];
    }

    /// <summary>`host:port` or `tcp://host:port` (as upstream groups write targets).</summary>
    public static HostPort? ParseTarget(string t)
    {
        if (t.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase)) t = t[6..].TrimEnd('/');
        return HostPort.TryParse(t, out var hp) ? hp : null;
    }

    /// <summary>Round-robin start over a group; the session tries the others in turn when one fails.</summary>
    public int NextStart(int count) => count <= 1 ? 0 : (int)((uint)Interlocked.Increment(ref _next) % (uint)count);

    public DataScanner Scanner(SmtpConfig c) => new(BareNewline(c), c.MaxMessage);

    public ChunkEncoder Encoder(SmtpConfig c) => new(BareNewline(c), c.MaxMessage);

    static BareNewlineMode BareNewline(SmtpConfig c) => c.BareNewline == "normalize" ? BareNewlineMode.Normalize : BareNewlineMode.Refuse;
}
