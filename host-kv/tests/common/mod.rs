//! Tests shared by every backend: each `tests/<backend>.rs` calls
//! [`conformance_tests!`] and [`concurrency`]'s scenarios with its own stores.

pub mod concurrency;
pub mod conformance;

/// Expands to one `#[tokio::test]` per behaviour in [`conformance`], each running on a
/// fresh store from `$fresh` (an async fn returning `(Arc<dyn Store>, guard)`; the guard
/// keeps the backing file or server alive until the test ends).
macro_rules! conformance_tests {
    ($fresh:ident) => {
        conformance_tests!(@each $fresh;
            get_returns_none_for_an_absent_key,
            set_then_get_returns_the_value,
            set_replaces_the_previous_value,
            values_are_binary_safe_and_may_be_empty,
            delete_removes_the_key_and_ignores_absent_keys,
            exists_reports_whether_a_key_holds_a_value,
            get_keys_lists_every_key_once,
            get_keys_lists_thousands_of_keys_without_duplicates,
            get_many_returns_values_in_order_with_none_for_absent_keys,
            set_many_stores_every_pair,
            delete_many_removes_only_the_listed_keys,
            increment_treats_an_absent_key_as_zero_and_returns_the_new_value,
            increment_stores_decimal_text_that_get_returns,
            increment_continues_from_a_decimal_value_written_by_set,
            increment_on_a_non_integer_value_fails_with_not_an_integer,
            cas_remembers_the_value_it_read_and_its_key,
            cas_swap_succeeds_when_the_key_is_unchanged,
            cas_swap_fails_after_a_concurrent_write,
            cas_swap_fails_when_the_key_was_deleted_meanwhile,
            cas_on_an_absent_key_succeeds_once_and_a_second_handle_then_fails,
            cas_on_an_empty_value_does_not_confuse_empty_with_absent,
        );
    };
    (@each $fresh:ident; $($name:ident),* $(,)?) => {
        mod conformance {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _guard) = super::$fresh().await;
                    crate::common::conformance::$name(store).await;
                }
            )*
        }
    };
}
