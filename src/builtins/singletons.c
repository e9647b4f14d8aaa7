/* singletons.c - None, True and False, and the layer's init/fini.
 *
 * The singletons are static objects with an immortal header: ft_incref and
 * ft_decref see FT_REF_IMMORTAL and write nothing, so every thread can use
 * them without touching a shared cache line. They are fully initialised at
 * compile time, hence usable before ft_init and after ft_fini. */
#include "builtins_int.h"

const ft_type ft_none_type = {
    .name = "NoneType",
    .size = sizeof(ft_object),
};

const ft_type ft_bool_type = {
    .name = "bool",
    .size = sizeof(ft_object),
};

static ft_object none_object = FTI_STATIC_HEAD(&ft_none_type);
static ft_object true_object = FTI_STATIC_HEAD(&ft_bool_type);
static ft_object false_object = FTI_STATIC_HEAD(&ft_bool_type);

void *ft_none(void)
{
    return &none_object;
}

void *ft_true(void)
{
    return &true_object;
}

void *ft_false(void)
{
    return &false_object;
}

void *ft_bool(bool v)
{
    return v ? &true_object : &false_object;
}

int fti_builtins_init(const ft_config *cfg)
{
    (void)cfg;
    fti_int_init();
    fti_str_init();
    return 0;
}

void fti_builtins_fini(void)
{
    fti_str_fini();
}
