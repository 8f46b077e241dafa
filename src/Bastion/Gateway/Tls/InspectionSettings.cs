using System.Collections.Immutable;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Bastion.Configuration;
using Bastion.Policy;

namespace Bastion.Gateway.Tls;

/// <summary>
/// One http-proxy listener's `tls_inspection`, loaded and compiled with the rest of a configuration (so reload
/// swaps CA and lists together): the CA, which hosts are inspected, which origins are trusted beyond the system
/// store, and which are not verified at all.
/// </summary>
public sealed class InspectionSettings
{
    public required CertificateAuthority Ca { get; init; }
    /// <summary>Null: every host is inspected (minus <see cref="_skip"/>).</summary>
    readonly HostMatcher? _inspect;
    readonly HostMatcher? _skip;
    readonly HostMatcher? _insecure;
    /// <summary>`upstream_ca`: roots trusted for origins besides the system store (empty when not set).</summary>
    public X509Certificate2Collection UpstreamRoots { get; }
    /// <summary>Origin certificate checks, with what passed recently remembered (a reload starts afresh).</summary>
    public OriginVerifier Verifier { get; }

    InspectionSettings(HostMatcher? inspect, HostMatcher? skip, HostMatcher? insecure, X509Certificate2Collection roots)
    {
        _inspect = inspect;
        _skip = skip;
        _insecure = insecure;
        UpstreamRoots = roots;
        Verifier = new OriginVerifier(roots);
    }

    /// <summary>Inspect unless `skip` names the host; with an `inspect` list, only the hosts it names.</summary>
    public bool ShouldInspect(string host) =>
        !(_skip?.Matches(host) ?? false) && (_inspect?.Matches(host) ?? true);

    /// <summary>`insecure_upstream`: the origin's certificate is not verified (labs only).</summary>
    public bool IsInsecureUpstream(string host) => _insecure?.Matches(host) ?? false;

    /// <summary>Loads every listener's settings; problems go to <paramref name="errors"/> as FILE:LINE:COL lines.</summary>
    public static ImmutableDictionary<string, InspectionSettings> Load(BastionConfig config, PolicyCompiler hosts, List<ConfigError> errors)
    {
        // Most configurations inspect nothing: they must not load the crypto assemblies (compiling a method loads
        // every type it names), so the work is in a method of its own.
        if (!config.Listeners.Any(l => l.TlsInspection is not null)) return ImmutableDictionary<string, InspectionSettings>.Empty;
        return LoadSome(config, hosts, errors);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static ImmutableDictionary<string, InspectionSettings> LoadSome(BastionConfig config, PolicyCompiler hosts, List<ConfigError> errors)
    {
        var result = ImmutableDictionary.CreateBuilder<string, InspectionSettings>(StringComparer.Ordinal);
        foreach (var l in config.Listeners)
        {
            if (l.TlsInspection is not { } ti) continue;
            if (l.Type != ListenerType.HttpProxy)
            {
                errors.Add(new ConfigError(ti.Pos, $"listener '{l.Name}': tls_inspection is for http-proxy listeners"));
                continue;
            }
            var dir = config.Resolve(ti.Ca.Text);
            CertificateAuthority ca;
            try { ca = CertificateAuthority.Load(dir); }
            catch (CaException e)
            {
                errors.Add(new ConfigError(ti.Ca.Pos, $"listener '{l.Name}': tls_inspection.ca: {e.Message}"));
                continue;
            }
            WarnIfKeyIsShared(Path.Combine(dir, CertificateAuthority.KeyFile), ti.Ca.Pos, errors);

            var roots = new X509Certificate2Collection();
            if (ti.UpstreamCa is { } uca)
            {
                var path = config.Resolve(uca.Text);
                try
                {
                    roots.ImportFromPemFile(path);
                    if (roots.Count == 0) errors.Add(new ConfigError(uca.Pos, $"listener '{l.Name}': tls_inspection.upstream_ca: {path} holds no PEM certificate"));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
                {
                    errors.Add(new ConfigError(uca.Pos, $"listener '{l.Name}': tls_inspection.upstream_ca: cannot read {path}: {e.Message}"));
                }
            }
            HostMatcher? Hosts(ImmutableArray<ValueSpec> values) => values.IsEmpty ? null : hosts.CompileHosts(values);
            result[l.Name] = new InspectionSettings(Hosts(ti.Inspect), Hosts(ti.Skip), Hosts(ti.InsecureUpstream), roots) { Ca = ca };
        }
        return result.ToImmutable();
    }

    static void WarnIfKeyIsShared(string keyPath, SourcePos pos, List<ConfigError> errors)
    {
        if (OperatingSystem.IsWindows()) return;
        try
        {
            var mode = File.GetUnixFileMode(keyPath);
            if ((mode & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
                errors.Add(new ConfigError(pos, $"{keyPath} is readable by other users (chmod 600 it): whoever holds it can impersonate any site to your users", IsWarning: true));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
