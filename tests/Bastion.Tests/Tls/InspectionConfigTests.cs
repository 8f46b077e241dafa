using Bastion.Gateway.Tls;
using Bastion.Tests.Infrastructure;
using Bastion.Tests.Unit;

namespace Bastion.Tests.Tls;

/// <summary>`check` on tls_inspection: CA files, key match, patterns, upstream_ca, where it applies.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class InspectionConfigTests
{
    static string Yaml(string inspection, string type = "http-proxy") => $$"""
        lists:
          banks: [bank.example, otherbank.example]
        listeners:
          - name: web
            type: {{type}}
            listen: 127.0.0.1:0
            policy: p
            tls_inspection:
        {{inspection}}
        policies:
          p: { rules: [{ allow: {} }] }
        """;

    static ConfigFixture WithCa(bool shareKey = false)
    {
        var f = new ConfigFixture();
        CertificateAuthority.Create(Path.Combine(f.Dir, "ca"), false, []);
        if (shareKey) File.SetUnixFileMode(Path.Combine(f.Dir, "ca", "ca.key"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        return f;
    }

    [Fact]
    public void A_valid_inspection_is_compiled_with_its_lists()
    {
        var f = WithCa();
        f.File("roots.pem", TestCerts.Localhost().ExportCertificatePem());
        var rt = f.BuildOk(Yaml("""
                  ca: ca
                  inspect: ["*.example", "~^api[0-9]+\\.test$"]
                  skip: ["@banks"]
                  upstream_ca: roots.pem
                  insecure_upstream: [lab.example]
            """));
        var s = rt.Inspection["web"];
        Assert.True(s.ShouldInspect("www.example"));
        Assert.True(s.ShouldInspect("api7.test"));
        Assert.False(s.ShouldInspect("bank.example"));
        Assert.False(s.ShouldInspect("login.otherbank.example"));
        Assert.False(s.ShouldInspect("elsewhere.org"));
        Assert.True(s.IsInsecureUpstream("lab.example"));
        Assert.False(s.IsInsecureUpstream("www.example"));
        Assert.Single(s.UpstreamRoots);
    }

    [Fact]
    public void Without_an_inspect_list_everything_but_skip_is_inspected()
    {
        var rt = WithCa().BuildOk(Yaml("      ca: ca\n      skip: [bank.example]"));
        Assert.True(rt.Inspection["web"].ShouldInspect("anything.org"));
        Assert.False(rt.Inspection["web"].ShouldInspect("bank.example"));
    }

    [Fact]
    public void Problems_are_reported_where_they_were_written()
    {
        var f = WithCa();
        var (_, errors) = f.Build(Yaml("""
                  ca: ca
                  inspect: ["~(unclosed", "@nolist"]
                  upstream_ca: missing.pem
            """));
        ConfigFixture.HasError(errors, f.Path, 10, 17, "bad pattern '~(unclosed'");
        ConfigFixture.HasError(errors, f.Path, 10, 31, "unknown list '@nolist'");
        ConfigFixture.HasError(errors, f.Path, 11, 20, "tls_inspection.upstream_ca: cannot read");
    }

    [Fact]
    public void A_key_of_another_ca_is_refused()
    {
        var f = WithCa();
        CertificateAuthority.Create(Path.Combine(f.Dir, "other"), false, []);
        File.Copy(Path.Combine(f.Dir, "other", "ca.key"), Path.Combine(f.Dir, "ca", "ca.key"), overwrite: true);
        var (_, errors) = f.Build(Yaml("      ca: ca"));
        ConfigFixture.HasError(errors, f.Path, 9, 11, "does not belong to");
    }

    [Fact]
    public void A_key_others_can_read_is_a_warning()
    {
        var f = WithCa(shareKey: true);
        var (_, errors) = f.Build(Yaml("      ca: ca"));
        ConfigFixture.HasError(errors, f.Path, 9, 11, "readable by other users", warning: true);
        Assert.DoesNotContain(errors, e => !e.IsWarning);
    }

    [Fact]
    public void Only_http_proxy_listeners_inspect_and_ca_is_required()
    {
        var f = WithCa();
        var (_, errors) = f.Build(Yaml("      ca: ca", type: "socks5"));
        ConfigFixture.HasError(errors, f.Path, 9, 7, "tls_inspection is for http-proxy listeners");
        (_, errors) = f.Build(Yaml("      inspect: [a.example]"));
        ConfigFixture.HasError(errors, f.Path, 9, 7, "tls_inspection needs 'ca'");
    }
}
