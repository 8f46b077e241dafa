using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Forward;

/// <summary>One plain and one TLS origin shared by the forward-proxy tests.</summary>
public sealed class OriginFixture : IAsyncLifetime
{
    public TestOrigin Origin { get; private set; } = null!;
    public TestOrigin Tls { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Origin = await TestOrigin.StartAsync();
        Tls = await TestOrigin.StartAsync(https: true);
    }

    public async Task DisposeAsync()
    {
        await Origin.DisposeAsync();
        await Tls.DisposeAsync();
    }
}

static class ProxyConfigs
{
    /// <summary>A forward proxy allowing loopback origins on any port, with a few deny rules to test against.</summary>
    public static string Basic(string extraListener = "", string limits = "", string rules = "") => $$"""
        lists:
          blocked: [blocked.test, ads.example]
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
        {{(limits.Length > 0 ? $"    limits: {limits}" : "")}}
        {{extraListener}}
        policies:
          out:
            default: deny
            rules:
        {{rules}}
              - deny: { host: "@blocked" }
                reason: blocked domain
                name: no-blocked
              - deny: { path: "/secret/**" }
                reason: secret area
              - deny: { header: { User-Agent: "~(?i)evilbot" } }
                reason: bad robot
              - deny: { content_type: "application/x-*" }
                reason: no binaries
                name: no-binaries
              - deny: { size: "> 50MiB" }
                reason: response too big
                name: too-big
              - allow: { method: CONNECT, port: [443, 1-65535] }
                name: tunnels
              - allow: { source: 127.0.0.0/8, not: { method: CONNECT } }
                name: loopback
        """;
}
