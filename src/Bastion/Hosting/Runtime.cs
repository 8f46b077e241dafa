using System.Collections.Immutable;
using Bastion.Configuration;
using Bastion.Identity;
using Bastion.Policy;

namespace Bastion.Hosting;

/// <summary>
/// One loaded configuration with everything compiled from it: lists, identity, policies. Immutable; reload builds
/// a new one and swaps it in whole. A session keeps the snapshot it started with for connection-level choices and
/// asks the host's current one for each new request.
/// </summary>
public sealed class Runtime
{
    public required BastionConfig Config { get; init; }
    public required NamedLists Lists { get; init; }
    public required IdentityStore Identity { get; init; }
    public required ImmutableDictionary<string, CompiledPolicy> Policies { get; init; }
    public required ImmutableDictionary<string, CidrSet> ProxyProtocolFronts { get; init; }
    /// <summary>How client-named hosts are resolved (`resolver:`); what address rules then judge.</summary>
    public Gateway.Resolver Resolver { get; init; } = Gateway.Resolver.Default;
    /// <summary>http-proxy listeners' `tls_inspection`, by listener name.</summary>
    public ImmutableDictionary<string, Gateway.Tls.InspectionSettings> Inspection { get; init; } = ImmutableDictionary<string, Gateway.Tls.InspectionSettings>.Empty;
    public long Generation { get; init; }
    public DateTime LoadedAt { get; init; } = DateTime.UtcNow;

    /// <summary>Used by listeners that name no policy: deny-by-default (SPEC 3).</summary>
    static readonly CompiledPolicy NoPolicy = new("(none)", Verdict.Deny, []);

    public ListenerConfig? Listener(string name)
    {
        foreach (var l in Config.Listeners)
            if (l.Name == name) return l;
        return null;
    }

    public CompiledPolicy PolicyFor(ListenerConfig l) =>
        l.Policy is not null && Policies.TryGetValue(l.Policy, out var p) ? p : NoPolicy;

    /// <summary>Loads, validates and compiles a configuration file. Throws <see cref="ConfigException"/> with every error.</summary>
    public static Runtime Load(string? path, long generation = 1)
    {
        var text = path is null ? ConfigLoader.DefaultYaml() : ReadText(path);
        var (rt, errors) = Build(text, path, generation);
        if (rt is not null && SanityChecks.NothingToRun(rt.Config, errors) is { } none) errors.Add(none);
        var fatal = errors.Where(e => !e.IsWarning).ToList();
        if (rt is null || fatal.Count > 0) throw new ConfigException(fatal);
        return rt;
    }

    static string ReadText(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException([new ConfigError(new SourcePos(path, 1, 1), $"cannot read configuration: {WhyUnreadable(path, e)}")]);
        }
    }

    /// <summary>.NET says "Access to the path is denied" for a folder, which sends the reader to the permissions.</summary>
    public static string WhyUnreadable(string path, Exception e) => Directory.Exists(path) ? "it is a folder, not a file" : e.Message;

    /// <summary>Everything `check` reports: errors and warnings. The runtime is null when the text could not be parsed.</summary>
    public static (Runtime? Runtime, List<ConfigError> Errors) Build(string text, string? path, long generation = 1)
    {
        var (config, errors) = ConfigLoader.Parse(text, path);
        if (config is null) return (null, errors);
        errors.AddRange(ConfigValidator.Validate(config));
        errors.AddRange(SanityChecks.Validate(config));

        var lists = NamedLists.Load(config, errors);
        var identity = LoadIdentity(config, errors);
        var groups = config.Identity?.Groups ?? ImmutableDictionary<string, ImmutableArray<string>>.Empty;
        var compiler = new PolicyCompiler(lists, groups, errors);
        var policies = ImmutableDictionary.CreateBuilder<string, CompiledPolicy>(StringComparer.Ordinal);
        foreach (var (name, p) in config.Policies) policies[name] = compiler.Compile(p);
        var inspection = Gateway.Tls.InspectionSettings.Load(config, compiler, errors);

        var fronts = ImmutableDictionary.CreateBuilder<string, CidrSet>(StringComparer.Ordinal);
        foreach (var l in config.Listeners)
        {
            if (l.AcceptProxyProtocol.IsEmpty) continue;
            var entries = new List<string>();
            foreach (var e in l.AcceptProxyProtocol)
            {
                if (e.StartsWith('@') && lists.Has(e[1..])) entries.AddRange(lists.Entries(e[1..]));
                else if (e.StartsWith('@')) errors.Add(new ConfigError(l.Pos, $"listener '{l.Name}': unknown list '{e}' in accept_proxy_protocol"));
                else entries.Add(e);
            }
            var bad = new List<string>();
            fronts[l.Name] = CidrSet.Build(entries, bad);
            foreach (var b in bad) errors.Add(new ConfigError(l.Pos, $"listener '{l.Name}': accept_proxy_protocol: '{b}' is not an IP or CIDR"));
        }

        var rt = new Runtime
        {
            Config = config,
            Lists = lists,
            Identity = identity,
            Policies = policies.ToImmutable(),
            ProxyProtocolFronts = fronts.ToImmutable(),
            Resolver = Gateway.Resolver.Load(config, errors),
            Inspection = inspection,
            Generation = generation,
        };
        errors.AddRange(ConfigValidator.Warnings(rt));
        return (rt, errors);
    }

    static IdentityStore LoadIdentity(BastionConfig config, List<ConfigError> errors)
    {
        if (config.Identity?.UsersFile is not { } file) return IdentityStore.Empty;
        var path = config.Resolve(file);
        try
        {
            var problems = new List<string>();
            var users = Htpasswd.Read(path, problems);
            foreach (var p in problems) errors.Add(new ConfigError(config.Identity.Pos, $"identity.users {path}: {p}"));
            return new IdentityStore(users);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors.Add(new ConfigError(config.Identity.Pos, $"identity.users: cannot read {path}: {e.Message}"));
            return IdentityStore.Empty;
        }
    }
}
